// The few OpenSSL 3 entry points Swift cannot import: function-like macros and 64-bit option
// constants. Nothing else belongs here (STYLE: the shim holds only what Swift cannot import).
#ifndef CONSORT_CSHIMS_H
#define CONSORT_CSHIMS_H

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>

// SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
int consort_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
// SSL_CTX_set_read_ahead is a macro too: OpenSSL fills its buffer from the socket in one recv
// rather than a recv per record.
void consort_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int on);

// sk_GENERAL_NAME_num / _value are macros over the generic stack functions.
int consort_sk_GENERAL_NAME_num(const GENERAL_NAMES *names);
const GENERAL_NAME *consort_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index);

// SSL_OP_* are built with a macro producing uint64_t, which Swift does not evaluate.
static const uint64_t CONSORT_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t CONSORT_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;

// curl_easy_setopt and curl_easy_getinfo are variadic: one typed wrapper per argument kind.
CURLcode consort_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode consort_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode consort_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode consort_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value);
CURLcode consort_curl_setopt_read_function(CURL *handle, curl_read_callback callback);
CURLcode consort_curl_setopt_write_function(CURL *handle, curl_write_callback callback);
CURLcode consort_curl_setopt_header_function(CURL *handle, curl_write_callback callback);
CURLcode consort_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);

#endif
