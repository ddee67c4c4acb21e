import ArchiveWatch
import Testing
