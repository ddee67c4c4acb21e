/*
 * LD_PRELOAD shim for running Debian 12's Orthanc 1.10 in tests and benchmarks:
 *
 * 1. bind: Orthanc has no bind-address setting and listens on the wildcard address; the shim
 *    makes it listen on loopback only, so a test never opens a port beyond this machine.
 *    IPv4 0.0.0.0 becomes 127.0.0.1; IPv6 :: becomes ::1.
 * 2. dlsym: Orthanc's web server (civetweb 1.15) looks up SSL_get_peer_certificate at run time,
 *    which OpenSSL 3 only has as a macro for SSL_get1_peer_certificate (same semantics: the
 *    certificate with its reference count raised). Unmapped, the pointer is NULL and Orthanc
 *    crashes on the first client certificate (civetweb issue #1334): no mutual TLS at all.
 *
 * Built at run time: cc -shared -fPIC -o orthanc_preload.so orthanc_preload.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
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

void *dlsym(void *handle, const char *symbol) {
    static void *(*real_dlsym)(void *, const char *);
    if (!real_dlsym) real_dlsym = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!real_dlsym) real_dlsym = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    if (symbol && strcmp(symbol, "SSL_get_peer_certificate") == 0) symbol = "SSL_get1_peer_certificate";
    return real_dlsym(handle, symbol);
}
