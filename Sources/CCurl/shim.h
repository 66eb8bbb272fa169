#include <curl/curl.h>

// curl_easy_setopt/curl_easy_getinfo are variadic and cannot be called from Swift; these
// fixed-signature wrappers pass one typed argument each.

static inline CURLcode anduin_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode anduin_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode anduin_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode anduin_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode anduin_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
// WRITEFUNCTION and HEADERFUNCTION share this signature.
static inline CURLcode anduin_setopt_datafn(CURL *h, CURLoption o, curl_write_callback f) { return curl_easy_setopt(h, o, f); }
// XFERINFOFUNCTION: called about once a second even when idle, so a stream can be aborted.
static inline CURLcode anduin_setopt_xferinfofn(CURL *h, CURLoption o, curl_xferinfo_callback f) { return curl_easy_setopt(h, o, f); }

static inline CURLcode anduin_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode anduin_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }

// CURL_GLOBAL_DEFAULT is a composite macro; expose it as a plain constant.
static inline long anduin_curl_global_default(void) { return CURL_GLOBAL_DEFAULT; }
