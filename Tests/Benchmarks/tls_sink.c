/*
 * tls_sink: the benchmark's floor for uploads. An HTTPS server (mutual TLS, same settings as
 * consort receive: TLS >= 1.2, client certificate required) that reads each request's
 * Content-Length body and throws it away, then answers 200. One connection at a time.
 *
 *   cc -O2 -o tls_sink tls_sink.c -lssl -lcrypto
 *   tls_sink PORT CERT KEY CA      (prints "ready" when listening on 127.0.0.1:PORT)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: tls_sink PORT CERT KEY CA\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 || SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, argv[4], NULL) != 1) { ERR_print_errors_fp(stderr); return 1; }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1])); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) { perror("listen"); return 1; }
    printf("ready\n"); fflush(stdout);
    static char buf[1 << 18];
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
            for (;;) {  /* requests on this connection */
                size_t have = 0; char *end = NULL; int n;
                while (!(end = memmem(buf, have, "\r\n\r\n", 4)) && have < 65536 && (n = SSL_read(ssl, buf + have, 65536 - have)) > 0) have += n;
                if (!end) break;
                long long length = 0;
                for (char *p = buf; p < end; p++) if (!strncasecmp(p, "\ncontent-length:", 16)) length = atoll(p + 16);
                long long left = length - (long long)(have - (end + 4 - buf));
                while (left > 0 && (n = SSL_read(ssl, buf, sizeof buf)) > 0) left -= n;
                const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                if (SSL_write(ssl, ok, strlen(ok)) <= 0 || left > 0) break;
            }
        }
        SSL_shutdown(ssl); SSL_free(ssl); close(c);
    }
}
