// SQLite 3: the agent's inventory and spool (one database, WAL mode). SQLITE_TRANSIENT is a macro
// casting -1 to a function pointer, which Swift cannot import: the wrapper passes nil where the
// value is copied before the call returns (SQLITE_STATIC is safe then) or uses sqlite3_bind_*64
// with a copy it keeps alive until the step.
#include <sqlite3.h>
