// libpq (Debian package libpq-dev): the coordinator's PostgreSQL registry.
#include <libpq-fe.h>
