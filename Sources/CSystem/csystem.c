#define _GNU_SOURCE
#include <unistd.h>
#include "csystem.h"

int consort_syncfs(int fd) { return syncfs(fd); }
