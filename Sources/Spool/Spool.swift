/// The spool's policies as pure state machines: no I/O, no clock (time arrives as arguments).
public enum SpoolModule {}
