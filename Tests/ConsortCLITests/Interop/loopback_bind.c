/*
 * LD_PRELOAD shim for interop tests: makes a third-party server that binds to the wildcard
 * address (Orthanc 1.10 has no bind-address setting) listen on loopback only, so a test never
 * opens a port beyond this machine. IPv4 0.0.0.0 becomes 127.0.0.1; IPv6 :: becomes ::1.
 * Built by the test suite at run time: cc -shared -fPIC -o loopback_bind.so loopback_bind.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (address && address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in copy;
        memcpy(&copy, address, sizeof copy);
        if (copy.sin_addr.s_addr == htonl(INADDR_ANY)) copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
    }
    if (address && address->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 copy;
        memcpy(&copy, address, sizeof copy);
        if (memcmp(&copy.sin6_addr, &in6addr_any, sizeof(struct in6_addr)) == 0) copy.sin6_addr = in6addr_loopback;
        return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
    }
    return real_bind(fd, address, length);
}
