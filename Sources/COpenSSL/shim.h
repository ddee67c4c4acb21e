// OpenSSL 3 (libssl-dev): SHA-256 digests now; TLS for the transport in a later module.
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
