/*
 * A stand-in for an older libcurl, for t/025_libcurl_options.pl.  Loaded
 * with LD_PRELOAD, it makes curl_easy_setopt() refuse the option named in
 * the environment variable KW_REFUSE_OPTION (e.g. CURLOPT_PREREQFUNCTION),
 * as a libcurl that does not know it would, and passes every other call
 * on to the real libcurl.
 */
#define _GNU_SOURCE
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef CURLcode (*setopt_fn) (CURL *handle, CURLoption option,...);

CURLcode
curl_easy_setopt(CURL *handle, CURLoption option,...)
{
	static setopt_fn real = NULL;
	const char *refuse = getenv("KW_REFUSE_OPTION");
	const struct curl_easyoption *o;
	va_list		ap;
	void	   *arg;

	/* every option value is passed as one pointer-sized word */
	va_start(ap, option);
	arg = va_arg(ap, void *);
	va_end(ap);

	if (refuse != NULL && strncmp(refuse, "CURLOPT_", 8) == 0 &&
		(o = curl_easy_option_by_name(refuse + 8)) != NULL &&
		o->id == option)
		return CURLE_UNKNOWN_OPTION;

	if (real == NULL)
		real = (setopt_fn) dlsym(RTLD_NEXT, "curl_easy_setopt");
	return real(handle, option, arg);
}
