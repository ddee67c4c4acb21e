// OpenSSL 3 (libssl-dev): SHA-256 digests now; TLS for the transport in a later module.
#include <openssl/evp.h>
#include <openssl/err.h>
