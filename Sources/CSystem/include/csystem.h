// GNU libc calls the Glibc module does not export (declared only under _GNU_SOURCE).
#ifndef CONSORT_CSYSTEM_H
#define CONSORT_CSYSTEM_H

// syncfs(2): make everything written to the filesystem holding `fd` durable, in one journal
// commit. The STOW-RS receiver uses it once per request instead of an fsync per instance.
int consort_syncfs(int fd);

// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: starts writing back a range of a file without
// waiting for it, so that the fsync that follows has less left to wait for. The DIMSE intake
// calls it as each part of an instance is written (it answers success only after its fsync).
int consort_start_writeback(int fd, long long offset, long long count);

// copy_file_range(2): `count` bytes of `in` from `offset` appended at `out`'s position, copied
// inside the kernel (no trip through user memory). The bytes copied (0 at the end of `in`), or
// -1 with errno set (EXDEV, ENOSYS, EINVAL: the caller copies them itself).
long long consort_copy_range(int in, long long offset, int out, long long count);

// Turns O_DIRECT on or off for an open file (fcntl F_SETFL): the receiver writes staged instances
// around the page cache, and falls back to buffered writes where a filesystem refuses. 0 or -1.
int consort_set_direct_io(int fd, int on);

// The filesystem type (statfs f_type, e.g. 0xEF53 for ext4) of the one holding `path`; -1 on error.
// The receiver writes direct only on local disk filesystems.
long consort_filesystem_type(const char *path);

// Signals delivered through a pipe (the self-pipe trick). Swift cannot write an async-signal-safe
// handler (a Swift global may run its lazy initialiser inside the handler), so the handler is C:
// it writes the signal's number, one byte, to a non-blocking pipe and does nothing else.
// `consort_signals_arm` installs that handler (sigaction, SA_RESTART) for each signal given and
// returns the pipe's read end, or -1 with errno set. From that instant no such signal is lost,
// whichever thread it lands on; the caller reads the bytes at its leisure. Arm once per process.
int consort_signals_arm(const int *signals, int count);

// Who is on the other end of a connected Unix socket (SO_PEERCRED; struct ucred is _GNU_SOURCE):
// the admin socket names the user who asked for an action. 0, or -1 with errno set.
int consort_peer_credentials(int fd, unsigned int *uid, int *pid);

// The calling thread's share of the CPU lowered for background work (a bulk transfer), so that
// urgent work in the same processes runs first: its niceness made at least the process's plus
// `by` (at most 19), for this thread alone (setpriority on its thread id); asking again changes
// nothing. Use it on threads that do only that work from then on. 0, or -1 with errno set.
int consort_thread_nicer(int by);

// For a thread consort_thread_nicer lowered, about to hold a lock urgent work may wait for: back
// to its process's niceness, the niceness it had stored in *previous (to put back with
// consort_thread_set_niceness). 1 done; 0 nothing to do (a thread level with its process:
// after its first question, no system call); -1 with errno set when not allowed (then not
// tried again on this thread). Lowering a niceness needs CAP_SYS_NICE or
// RLIMIT_NICE headroom (a ceiling of 20 - rlim_cur: systemd's LimitNICE=+0 lets a service come
// back to nice 0, where it started, and no further).
int consort_thread_unlower(int *previous);
int consort_thread_set_niceness(int value);

// The calling thread's niceness (getpriority on its thread id).
int consort_thread_niceness(void);

// The calling thread's I/O priority (ioprio_get / ioprio_set, the kernel's encoding: class << 13
// | level), to set the idle class around bulk work and put back what was there. Classes: 0 none
// set (best effort by the thread's niceness), 1 real time, 2 best effort, 3 idle (served when no
// other class waits; mq-deadline and BFQ age it, so it is not starved for long). Unlike
// niceness, any class but real time can be set back and forth. -1 with errno set on error.
int consort_thread_io_priority(void);
int consort_thread_set_io_priority(int value);
#define CONSORT_IO_PRIORITY_IDLE (3 << 13)

#endif
