import ConsortCLI
ConsortCommand.main()
