#ifndef REELAY_CCURL_SHIM_H
#define REELAY_CCURL_SHIM_H
#include <curl/curl.h>
#include <stdio.h>

/* curl_easy_setopt / curl_easy_getinfo are variadic; Swift needs fixed-argument wrappers. */
static inline CURLcode reelay_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode reelay_curl_setopt_ptr(CURL *h, CURLoption o, const void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode reelay_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
typedef size_t (*reelay_curl_data_cb)(char *ptr, size_t size, size_t nmemb, void *userdata);
static inline CURLcode reelay_curl_setopt_datacb(CURL *h, CURLoption o, reelay_curl_data_cb cb) { return curl_easy_setopt(h, o, cb); }
static inline CURLcode reelay_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode reelay_curl_getinfo_double(CURL *h, CURLINFO i, double *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode reelay_curl_getinfo_string(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode reelay_curl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
typedef int (*reelay_curl_xferinfo_cb)(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
static inline CURLcode reelay_curl_setopt_xferinfocb(CURL *h, reelay_curl_xferinfo_cb cb) {
    return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb);
}
typedef curl_socket_t (*reelay_curl_opensocket_cb)(void *userdata, curlsocktype purpose, struct curl_sockaddr *address);
static inline CURLcode reelay_curl_setopt_opensocketcb(CURL *h, reelay_curl_opensocket_cb cb) {
    return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, cb);
}
static inline size_t reelay_curl_error_size(void) { return CURL_ERROR_SIZE; }
static inline CURLcode reelay_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_ALL); }
#endif
