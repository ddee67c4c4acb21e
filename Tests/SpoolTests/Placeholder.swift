import Spool
import Testing
