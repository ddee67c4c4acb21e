// The few OpenSSL 3 entry points Swift cannot import: function-like macros and 64-bit option
// constants. Nothing else belongs here (STYLE: the shim holds only what Swift cannot import).
#ifndef CONSORT_CSHIMS_H
#define CONSORT_CSHIMS_H

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>

// SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
int consort_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);

// sk_GENERAL_NAME_num / _value are macros over the generic stack functions.
int consort_sk_GENERAL_NAME_num(const GENERAL_NAMES *names);
const GENERAL_NAME *consort_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index);

// SSL_OP_* are built with a macro producing uint64_t, which Swift does not evaluate.
static const uint64_t CONSORT_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t CONSORT_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;

#endif
