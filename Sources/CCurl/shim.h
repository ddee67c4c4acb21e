// libcurl (OpenSSL flavour, libcurl4-openssl-dev): the HTTPS client with client certificates.
#include <curl/curl.h>
