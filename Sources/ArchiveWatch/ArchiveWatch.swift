/// Watching archive folders: inotify, polling, catch-up scans.
public enum ArchiveWatchModule {}
