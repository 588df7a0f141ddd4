/* etcd.c: donor membership in etcd (etcd.h) through etcd's v3 JSON gateway:
 * POSTs of JSON (keys and values base64) over libcurl's multi interface,
 * answers parsed with json-c as they stream in. Each handle runs one
 * thread: register_main keeps a donor's leased key (memserver/main.c),
 * watch_main hands a broker the whole set after each change.
 *
 * The watch thread runs inside the broker's seccomp allowlist, which is
 * loaded after gvm_etcd_watch returns. What needs more is done before, in
 * the calling thread: curl_global_init (gvm_etcd_create); in
 * gvm_etcd_watch the multi handle with its wakeup socketpair(AF_UNIX),
 * tzset, the thread, and its start (set_robust_list, rseq,
 * prctl(PR_SET_NAME)) before gvm_etcd_watch returns. Endpoints and donor
 * addresses are IP literals, so neither curl nor getaddrinfo resolves a
 * name, starts a resolver thread or opens a file. Measured with strace -f
 * (a release build; a watch through puts, a malformed value, an IPv6
 * endpoint and donor, a refused endpoint, an etcd restart, destroy), the
 * thread then issues only:
 *   socket(AF_INET or AF_INET6, SOCK_STREAM, IPPROTO_TCP), connect,
 *   setsockopt(SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_NODELAY),
 *   getsockopt(SO_ERROR), getsockname, getpeername,
 *   fcntl(F_GETFL; F_SETFL O_NONBLOCK), poll, sendto, recvfrom, close
 *     (the wakeup socketpair is polled and drained with recvfrom);
 *   write (log lines on stderr), getpid (in each log line);
 *   mmap, munmap, mprotect (its malloc arena), futex, getrandom (once per
 *     process: json-c's hash seed);
 *   when it ends: rt_sigprocmask, madvise, exit.
 * A stop is curl_multi_wakeup from gvm_etcd_destroy: a send on the pair. */
#include "etcd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "log.h"

#define ETCD_POLL_MS	     1000  /* longest wait in curl_multi_poll between stop checks */
#define ETCD_JSON_DEPTH_MAX  16	   /* nesting of etcd's answers */
#define ETCD_VALUE_DEPTH_MAX 4	   /* nesting of a donor's value */
#define ETCD_SKIP_LOG_MS     1000u /* skipped values: one log line a second */
#define ETCD_TEXT_MAX_BYTES  160u  /* etcd's words quoted in a log line */
#define ETCD_KEY_MAX_BYTES   (GVM_ETCD_PREFIX_MAX_BYTES + GVM_ETCD_ADDR_MAX_BYTES)
#define B64_LEN(bytes)	     (((bytes) + 2u) / 3u * 4u)

struct gvm_etcd {
	char endpoints[GVM_ETCD_ENDPOINTS_MAX][GVM_ETCD_ENDPOINT_MAX_BYTES];
	unsigned n_endpoints;
	unsigned cur; /* the endpoint in use; the next one after a failure */
	char prefix[GVM_ETCD_PREFIX_MAX_BYTES + 1];
	char range_end[GVM_ETCD_PREFIX_MAX_BYTES + 1]; /* prefix, last byte + 1 */
	size_t prefix_len;

	bool curl_inited;
	CURLM *multi; /* its wakeup socketpair ends poll for a stop */
	CURL *easy;   /* one transfer at a time, reused */
	struct curl_slist *headers;
	char curl_why[CURL_ERROR_SIZE];
	char why[512]; /* the last failure, for the log */

	pthread_t thread;
	bool started;
	atomic_bool stop;
	pthread_mutex_t lock; /* with cond: the thread's start handshake */
	pthread_cond_t cond;
	bool running;
	void *(*main)(struct gvm_etcd *e);

	/* register_main */
	struct gvm_etcd_donor self;
	unsigned ttl_s;

	/* watch_main: the set, sorted by addr; spare is where a read builds the next */
	gvm_etcd_set_cb cb;
	void *ctx;
	struct gvm_etcd_donor *set, *spare;
	unsigned n_set;
	atomic_uint_least64_t skipped;
	struct gvm_log_limit skip_log;
};

/* One answer from etcd: its JSON messages, each handed to on_msg as it
 * completes (a unary call has one, a watch one per batch). */
struct etcd_resp {
	struct gvm_etcd *e;
	const char *path;
	struct json_tokener *tok;
	int (*on_msg)(struct etcd_resp *r, struct json_object *msg);
	struct json_object *msg; /* a unary call's one message */
	long status;		 /* HTTP; 0 until the body starts */
	size_t msg_bytes;	 /* of the message being parsed */
	bool pending;		 /* non-blank bytes of a message not yet complete */
	int err;		 /* why the write callback stopped the transfer */
};

static int etcd_fail(struct gvm_etcd *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int etcd_fail(struct gvm_etcd *e, int err, const char *fmt, ...)
{
	va_list ap;
	int off = snprintf(e->why, sizeof(e->why), "%s: ", e->endpoints[e->cur]);

	va_start(ap, fmt);
	vsnprintf(e->why + off, sizeof(e->why) - (size_t)off, fmt, ap);
	va_end(ap);
	return err;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* etcd's bytes fit for a log line: at most ETCD_TEXT_MAX_BYTES, anything
 * but printable ASCII as '?'. */
static void printable(const char *s, size_t len, char *out, size_t n)
{
	size_t i;

	for (i = 0; i < len && i + 1 < n && i < ETCD_TEXT_MAX_BYTES; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	out[i] = '\0';
}

/* ---- addresses ---- */

static bool port_valid(const char *p)
{
	size_t len = strlen(p);

	if (len == 0 || len > 5 || strspn(p, "0123456789") != len)
		return false;
	return atoi(p) >= 1 && atoi(p) <= 65535;
}

/* "IP:PORT" or "[V6]:PORT", a port of 1..65535 and nothing else: true. */
static bool ip_port_literal(const char *s)
{
	unsigned char bin[sizeof(struct in6_addr)];
	char host[INET6_ADDRSTRLEN];
	const char *end, *port;
	size_t hlen;
	int family;

	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return false;
		s++;
		family = AF_INET6;
		port = end + 2;
	} else {
		end = strchr(s, ':');
		if (!end)
			return false;
		family = AF_INET;
		port = end + 1;
	}
	hlen = (size_t)(end - s);
	if (hlen == 0 || hlen >= sizeof(host))
		return false;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	return inet_pton(family, host, bin) == 1 && port_valid(port);
}

int gvm_etcd_check_donor(const struct gvm_etcd_donor *d, char *why, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (!memchr(d->addr, '\0', sizeof(d->addr))) {
		snprintf(why, n, "address longer than %u bytes", GVM_ETCD_ADDR_MAX_BYTES - 1);
		return -EINVAL;
	}
	/* An IP literal first: then gvm_parse_hostport resolves nothing. */
	if (!ip_port_literal(d->addr) || gvm_parse_hostport(d->addr, NULL, &ss, &len)) {
		snprintf(why, n, "address '%s' is not IP:PORT or [IPV6]:PORT", d->addr);
		return -EINVAL;
	}
	if (d->weight < 1 || d->weight > GVM_ETCD_WEIGHT_MAX) {
		snprintf(why, n, "weight %u is not in 1..%u", d->weight, GVM_ETCD_WEIGHT_MAX);
		return -EINVAL;
	}
	return 0;
}

/* One endpoint, len bytes at s, into out. */
static int endpoint_parse(const char *s, size_t len, char *out, char *why, size_t n)
{
	const char scheme[] = "http://";

	if (len >= GVM_ETCD_ENDPOINT_MAX_BYTES) {
		snprintf(why, n, "etcd endpoint '%.*s': longer than %u bytes", (int)len, s,
			 GVM_ETCD_ENDPOINT_MAX_BYTES - 1);
		return -EINVAL;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	if (strncmp(out, scheme, sizeof(scheme) - 1) != 0) {
		snprintf(why, n,
			 "etcd endpoint '%s': want http://IP:PORT (no https, no other scheme)",
			 out);
		return -EINVAL;
	}
	if (!ip_port_literal(out + sizeof(scheme) - 1)) {
		snprintf(why, n,
			 "etcd endpoint '%s': want http://IP:PORT or http://[IPV6]:PORT with an IP "
			 "address, not a name (nothing is resolved: the broker's sandbox allows no "
			 "resolver thread) and no path",
			 out);
		return -EINVAL;
	}
	return 0;
}

static int prefix_parse(struct gvm_etcd *e, const char *prefix, char *why, size_t n)
{
	size_t len = prefix ? strlen(prefix) : 0;

	if (len == 0 || len > GVM_ETCD_PREFIX_MAX_BYTES) {
		snprintf(why, n, "etcd prefix: want 1 to %u bytes", GVM_ETCD_PREFIX_MAX_BYTES);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (prefix[i] <= 0x20 || prefix[i] >= 0x7f) {
			snprintf(why, n, "etcd prefix '%s': want printable ASCII, no spaces",
				 prefix);
			return -EINVAL;
		}
	}
	memcpy(e->prefix, prefix, len + 1);
	memcpy(e->range_end, prefix, len + 1);
	e->range_end[len - 1]++; /* at most 0x7f: no carry */
	e->prefix_len = len;
	return 0;
}

/* ---- base64 (etcd's bytes fields) ---- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* out holds B64_LEN(len) + 1 bytes. */
static void b64_encode(const void *data, size_t len, char *out)
{
	const uint8_t *in = data;
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64_chars[v >> 18 & 63];
		out[o++] = b64_chars[v >> 12 & 63];
		out[o++] = i + 1 < len ? b64_chars[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? b64_chars[v & 63] : '=';
	}
	out[o] = '\0';
}

static int b64_value(char c)
{
	const char *at = c ? strchr(b64_chars, c) : NULL;

	return at ? (int)(at - b64_chars) : -1;
}

/* Standard base64 with padding into at most max bytes: 0 and *out_len,
 * -EINVAL (not base64) or -EFBIG. */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t max, size_t *out_len)
{
	size_t o = 0;

	if (len % 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		unsigned pad = 0;

		for (unsigned j = 0; j < 4; j++) {
			int x = in[i + j] == '=' ? 0 : b64_value(in[i + j]);

			if (in[i + j] == '=') {
				if (i + 4 != len || j < 2)
					return -EINVAL;
				pad++;
			} else if (x < 0 || pad) {
				return -EINVAL;
			}
			v = v << 6 | (uint32_t)x;
		}
		if (o + 3 - pad > max)
			return -EFBIG;
		out[o++] = (uint8_t)(v >> 16);
		if (pad < 2)
			out[o++] = (uint8_t)(v >> 8);
		if (pad < 1)
			out[o++] = (uint8_t)v;
	}
	*out_len = o;
	return 0;
}

/* ---- JSON fields as etcd's gateway writes them ---- */

/* An int64 field: a decimal string (how the gateway writes them) or a
 * number; absent or null is 0 (proto3's default). False for anything else. */
static bool json_int_field(struct json_object *o, const char *name, int64_t *v)
{
	struct json_object *f;
	const char *s;
	char *end;
	long long x;

	*v = 0;
	if (!json_object_object_get_ex(o, name, &f) || json_object_is_type(f, json_type_null))
		return true;
	if (json_object_is_type(f, json_type_int)) {
		*v = json_object_get_int64(f);
		return true;
	}
	if (!json_object_is_type(f, json_type_string))
		return false;
	s = json_object_get_string(f);
	if (json_object_get_string_len(f) > 20 || !(isdigit((unsigned char)s[0]) || s[0] == '-'))
		return false;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

/* A string field (absent or null: ""), or NULL when it is something else. */
static const char *json_str_field(struct json_object *o, const char *name, size_t *len)
{
	struct json_object *f;

	*len = 0;
	if (!json_object_object_get_ex(o, name, &f) || json_object_is_type(f, json_type_null))
		return "";
	if (!json_object_is_type(f, json_type_string))
		return NULL;
	*len = (size_t)json_object_get_string_len(f);
	return json_object_get_string(f);
}

static bool json_true_field(struct json_object *o, const char *name)
{
	struct json_object *f;

	return json_object_object_get_ex(o, name, &f) &&
	       json_object_is_type(f, json_type_boolean) && json_object_get_boolean(f);
}

/* The object field name, or NULL. */
static struct json_object *json_obj_field(struct json_object *o, const char *name)
{
	struct json_object *f;

	if (!json_object_object_get_ex(o, name, &f) || !json_object_is_type(f, json_type_object))
		return NULL;
	return f;
}

/* What etcd's error answer says, fit for a log line, or "". Unary calls
 * answer {"error":"..","message":".."}, streams {"error":{"message":..}}. */
static void etcd_error_text(struct json_object *msg, char *out, size_t n)
{
	struct json_object *err, *m;

	out[0] = '\0';
	if (!msg || !json_object_is_type(msg, json_type_object) ||
	    !json_object_object_get_ex(msg, "error", &err))
		return;
	if (json_object_is_type(err, json_type_object) &&
	    json_object_object_get_ex(err, "message", &m) &&
	    json_object_is_type(m, json_type_string))
		err = m;
	else if (json_object_object_get_ex(msg, "message", &m) &&
		 json_object_is_type(m, json_type_string))
		err = m;
	if (json_object_is_type(err, json_type_string))
		printable(json_object_get_string(err), (size_t)json_object_get_string_len(err), out,
			  n);
}

static int json_add(struct json_object *o, const char *name, struct json_object *v)
{
	if (!v || json_object_object_add(o, name, v)) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static int json_add_b64(struct json_object *o, const char *name, const void *data, size_t len)
{
	char *s = malloc(B64_LEN(len) + 1);
	int err;

	if (!s)
		return -ENOMEM;
	b64_encode(data, len, s);
	err = json_add(o, name, json_object_new_string(s));
	free(s);
	return err;
}

static int json_add_int(struct json_object *o, const char *name, int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%lld", (long long)v);
	return json_add(o, name, json_object_new_string(s));
}

/* ---- one HTTP exchange ---- */

static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

static bool all_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t')
			return false;
	return true;
}

/* A refusal (HTTP status other than 200): the start of its body says why,
 * as etcd's error JSON or as text. */
static int resp_refused(struct etcd_resp *r, const char *data, size_t len)
{
	char text[ETCD_TEXT_MAX_BYTES + 1];
	struct json_object *msg;
	size_t line = 0;

	msg = json_tokener_parse_ex(r->tok, data, (int)(len < 4096 ? len : 4096));
	etcd_error_text(msg, text, sizeof(text));
	json_object_put(msg);
	while (line < len && data[line] != '\r' && data[line] != '\n')
		line++;
	if (!text[0])
		printable(data, line, text, sizeof(text));
	return etcd_fail(r->e, -EIO, "%s: HTTP %ld: %s", r->path, r->status, text);
}

/* curl's write callback: feeds the tokener, hands over each message. */
static size_t resp_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct etcd_resp *r = arg;
	size_t len = size * nmemb, off = 0;

	if (!r->status) {
		curl_easy_getinfo(r->e->easy, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->status != 200) {
			r->err = resp_refused(r, data, len);
			return CURL_WRITEFUNC_ERROR;
		}
	}
	while (off < len) {
		size_t feed = len - off, room = GVM_ETCD_RESPONSE_MAX_BYTES - r->msg_bytes;
		enum json_tokener_error jerr;
		struct json_object *msg;

		if (feed > room)
			feed = room;
		if (!feed) {
			r->err = etcd_fail(r->e, -EFBIG, "%s: a message over %u MiB", r->path,
					   GVM_ETCD_RESPONSE_MAX_BYTES >> 20);
			return CURL_WRITEFUNC_ERROR;
		}
		msg = json_tokener_parse_ex(r->tok, data + off, (int)feed);
		jerr = json_tokener_get_error(r->tok);
		if (msg) {
			size_t used = json_tokener_get_parse_end(r->tok);

			off += used;
			r->msg_bytes = 0;
			r->pending = false;
			r->err = r->on_msg(r, msg);
			json_object_put(msg);
			if (r->err)
				return CURL_WRITEFUNC_ERROR;
		} else if (jerr == json_tokener_continue) {
			r->pending |= !all_blank(data + off, feed);
			r->msg_bytes += feed;
			off += feed;
		} else {
			r->err = etcd_fail(r->e, -EPROTO, "%s: not JSON: %s", r->path,
					   json_tokener_error_desc(jerr));
			return CURL_WRITEFUNC_ERROR;
		}
	}
	return len;
}

/* POSTs body to path on the current endpoint and runs the transfer until it
 * ends (timeout_ms, 0: never) or the handle is stopped, the answer passing
 * through r. 0, -ECANCELED (stopped), or -errno with e->why. */
static int etcd_post(struct gvm_etcd *e, const char *path, const char *body, long timeout_ms,
		     struct etcd_resp *r)
{
	char url[GVM_ETCD_ENDPOINT_MAX_BYTES + 32];
	CURLMcode mc = CURLM_OK;
	CURLcode rc = CURLE_OK;
	int running = 1, left, err = 0;
	long status = 0;
	CURLMsg *m;

	snprintf(url, sizeof(url), "%s%s", e->endpoints[e->cur], path);
	r->path = path;
	r->tok = json_tokener_new_ex(ETCD_JSON_DEPTH_MAX);
	if (!r->tok)
		return etcd_fail(e, -ENOMEM, "%s: out of memory", path);
	json_tokener_set_flags(r->tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	e->curl_why[0] = '\0';
	if (curl_easy_setopt(e->easy, CURLOPT_URL, url) ||
	    curl_easy_setopt(e->easy, CURLOPT_POSTFIELDS, body) ||
	    curl_easy_setopt(e->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body)) ||
	    curl_easy_setopt(e->easy, CURLOPT_TIMEOUT_MS, timeout_ms) ||
	    curl_easy_setopt(e->easy, CURLOPT_WRITEDATA, r) ||
	    curl_multi_add_handle(e->multi, e->easy)) {
		json_tokener_free(r->tok);
		return etcd_fail(e, -ENOMEM, "%s: curl refused the request", path);
	}
	while (running) {
		mc = curl_multi_perform(e->multi, &running);
		if (mc != CURLM_OK || !running)
			break;
		if (atomic_load(&e->stop)) {
			err = -ECANCELED;
			break;
		}
		mc = curl_multi_poll(e->multi, NULL, 0, ETCD_POLL_MS, NULL);
		if (mc != CURLM_OK)
			break;
	}
	while ((m = curl_multi_info_read(e->multi, &left)))
		if (m->msg == CURLMSG_DONE && m->easy_handle == e->easy)
			rc = m->data.result;
	curl_easy_getinfo(e->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(e->multi, e->easy);
	json_tokener_free(r->tok);
	r->tok = NULL;
	if (err)
		return err;
	if (mc != CURLM_OK)
		return etcd_fail(e, -EIO, "%s: %s", path, curl_multi_strerror(mc));
	if (r->err)
		return r->err;
	if (rc != CURLE_OK)
		return etcd_fail(e, curl_errno(rc), "%s: %s", path,
				 e->curl_why[0] ? e->curl_why : curl_easy_strerror(rc));
	if (r->pending)
		return etcd_fail(e, -EPROTO, "%s: the answer ends inside a JSON message", path);
	if (status != 200)
		return etcd_fail(e, -EIO, "%s: HTTP %ld", path, status);
	return 0;
}

static int unary_msg(struct etcd_resp *r, struct json_object *msg)
{
	if (r->msg)
		return etcd_fail(r->e, -EPROTO, "%s: more than one message in the answer", r->path);
	r->msg = json_object_get(msg);
	return 0;
}

/* One request, one answer: 0 and *out, a JSON object (json_object_put it). */
static int etcd_call(struct gvm_etcd *e, const char *path, struct json_object *req, long timeout_ms,
		     struct json_object **out)
{
	struct etcd_resp r = {.e = e, .on_msg = unary_msg};
	const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	int err;

	if (!body)
		return etcd_fail(e, -ENOMEM, "%s: out of memory", path);
	err = etcd_post(e, path, body, timeout_ms, &r);
	if (!err && (!r.msg || !json_object_is_type(r.msg, json_type_object)))
		err = etcd_fail(e, -EPROTO, "%s: the answer is not a JSON object", path);
	if (err) {
		json_object_put(r.msg);
		return err;
	}
	*out = r.msg;
	return 0;
}

/* Waits ms, or until the handle is stopped: 0 or -ECANCELED. */
static int etcd_sleep(struct gvm_etcd *e, unsigned ms)
{
	uint64_t end = now_ms() + ms, now;

	while (!atomic_load(&e->stop)) {
		now = now_ms();
		if (now >= end)
			return 0;
		curl_multi_poll(e->multi, NULL, 0, (int)(end - now), NULL);
	}
	return -ECANCELED;
}

static void etcd_next_endpoint(struct gvm_etcd *e)
{
	e->cur = (e->cur + 1) % e->n_endpoints;
}

static unsigned backoff_next(unsigned ms)
{
	return ms * 2 > GVM_ETCD_BACKOFF_MAX_MS ? GVM_ETCD_BACKOFF_MAX_MS : ms * 2;
}

/* ---- donors' values ---- */

/* A donor's value (len bytes) under the key whose name after the prefix
 * is name: 0 and *out, or -EINVAL and why (*out untouched). */
static int donor_parse(const char *name, const char *val, size_t len, struct gvm_etcd_donor *out,
		       char *why, size_t n)
{
	struct json_tokener *tok = json_tokener_new_ex(ETCD_VALUE_DEPTH_MAX);
	struct gvm_etcd_donor v = {.weight = 0}, *d = &v;
	struct json_object *o = NULL, *f;
	int64_t weight, capacity;
	const char *addr;
	size_t alen;
	int err = -EINVAL;

	if (!tok) {
		snprintf(why, n, "out of memory");
		return -ENOMEM;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	if (memchr(val, '\0', len) || !(o = json_tokener_parse_ex(tok, val, (int)len)) ||
	    !all_blank(val + json_tokener_get_parse_end(tok),
		       len - json_tokener_get_parse_end(tok)) ||
	    !json_object_is_type(o, json_type_object)) {
		snprintf(why, n, "not a JSON object");
		goto out;
	}
	addr = json_str_field(o, "addr", &alen);
	if (!addr || alen == 0 || alen >= sizeof(d->addr) || memchr(addr, '\0', alen)) {
		snprintf(why, n, "no \"addr\" string of 1 to %u bytes",
			 GVM_ETCD_ADDR_MAX_BYTES - 1);
		goto out;
	}
	memcpy(d->addr, addr, alen);
	if (strcmp(d->addr, name) != 0) {
		snprintf(why, n, "\"addr\" differs from the key");
		goto out;
	}
	if (!json_object_object_get_ex(o, "weight", &f) || !json_object_is_type(f, json_type_int) ||
	    (weight = json_object_get_int64(f)) < 1 || weight > GVM_ETCD_WEIGHT_MAX) {
		snprintf(why, n, "no \"weight\" integer in 1..%u", GVM_ETCD_WEIGHT_MAX);
		goto out;
	}
	d->weight = (unsigned)weight;
	if (!json_object_object_get_ex(o, "capacity", &f) ||
	    !json_object_is_type(f, json_type_int) || (capacity = json_object_get_int64(f)) < 0) {
		snprintf(why, n, "no \"capacity\" integer of 0 or more bytes");
		goto out;
	}
	d->capacity_bytes = json_object_get_uint64(f);
	err = gvm_etcd_check_donor(d, why, n);
	if (!err)
		*out = v;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return err;
}

/* The value register_main puts: {"addr":..,"weight":..,"capacity":..}. */
static int donor_value(const struct gvm_etcd_donor *d, char *out, size_t n)
{
	struct json_object *o = json_object_new_object();
	const char *s;
	int err = -ENOMEM;

	if (!o || json_add(o, "addr", json_object_new_string(d->addr)) ||
	    json_add(o, "weight", json_object_new_int64(d->weight)) ||
	    json_add(o, "capacity", json_object_new_uint64(d->capacity_bytes)))
		goto out;
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (s && strlen(s) < n && strlen(s) <= GVM_ETCD_VALUE_MAX_BYTES) {
		memcpy(out, s, strlen(s) + 1);
		err = 0;
	}
out:
	json_object_put(o);
	return err;
}

/* ---- donor side ---- */

static int lease_grant(struct gvm_etcd *e, int64_t *id, int64_t *ttl)
{
	struct json_object *req = json_object_new_object(), *ans = NULL;
	const char *msg;
	size_t len;
	int err = -ENOMEM;

	if (req && !json_add_int(req, "TTL", e->ttl_s) && !json_add_int(req, "ID", 0))
		err = etcd_call(e, "/v3/lease/grant", req, GVM_ETCD_REQUEST_TIMEOUT_MS, &ans);
	json_object_put(req);
	if (err)
		return err;
	msg = json_str_field(ans, "error", &len);
	if (!json_int_field(ans, "ID", id) || !json_int_field(ans, "TTL", ttl) || *id <= 0 ||
	    *ttl <= 0 || *ttl > GVM_ETCD_TTL_MAX_S || !msg || len)
		err = etcd_fail(e, -EPROTO, "/v3/lease/grant: no lease in the answer");
	json_object_put(ans);
	return err;
}

static int donor_put(struct gvm_etcd *e, int64_t lease)
{
	struct json_object *req = json_object_new_object(), *ans = NULL;
	char key[ETCD_KEY_MAX_BYTES], value[GVM_ETCD_VALUE_MAX_BYTES + 1];
	int err = -ENOMEM;

	snprintf(key, sizeof(key), "%s%s", e->prefix, e->self.addr);
	if (req && !donor_value(&e->self, value, sizeof(value)) &&
	    !json_add_b64(req, "key", key, strlen(key)) &&
	    !json_add_b64(req, "value", value, strlen(value)) && !json_add_int(req, "lease", lease))
		err = etcd_call(e, "/v3/kv/put", req, GVM_ETCD_REQUEST_TIMEOUT_MS, &ans);
	json_object_put(req);
	json_object_put(ans);
	return err;
}

/* One keepalive: 0, or -ENOENT when the lease has expired. */
static int lease_keepalive(struct gvm_etcd *e, int64_t id)
{
	struct json_object *req = json_object_new_object(), *ans = NULL, *res;
	int64_t ttl = 0;
	int err = -ENOMEM;

	if (req && !json_add_int(req, "ID", id))
		err = etcd_call(e, "/v3/lease/keepalive", req, GVM_ETCD_REQUEST_TIMEOUT_MS, &ans);
	json_object_put(req);
	if (err)
		return err;
	res = json_obj_field(ans, "result");
	if (!res || !json_int_field(res, "TTL", &ttl))
		err = etcd_fail(e, -EPROTO, "/v3/lease/keepalive: no result in the answer");
	else if (ttl <= 0)
		err = etcd_fail(e, -ENOENT, "lease %llx has expired", (unsigned long long)id);
	json_object_put(ans);
	return err;
}

/* Keeps the donor's key: grant and put, then a keepalive every third of
 * the TTL. A failure moves to the next endpoint at once (the keepalive of
 * the same lease, or a new registration); a whole round of endpoints
 * failing drops the lease and waits a backoff. */
static void *register_main(struct gvm_etcd *e)
{
	enum { NEVER, UP, DOWN } state = NEVER;
	unsigned backoff = GVM_ETCD_BACKOFF_MIN_MS, failed = 0;
	int64_t lease = 0, ttl = 0;
	bool warned = false;
	int err;

	while (!atomic_load(&e->stop)) {
		if (!lease) {
			err = lease_grant(e, &lease, &ttl);
			if (!err)
				err = donor_put(e, lease);
			if (err)
				lease = 0;
			else if (state == NEVER)
				gvm_info("etcd: registered %s (weight %u, %llu MiB) as %s%s at %s, "
					 "lease TTL %lld s",
					 e->self.addr, e->self.weight,
					 (unsigned long long)(e->self.capacity_bytes >> 20),
					 e->prefix, e->self.addr, e->endpoints[e->cur],
					 (long long)ttl);
			else if (state == DOWN)
				gvm_info("etcd: back: registered %s again at %s", e->self.addr,
					 e->endpoints[e->cur]);
			if (!err)
				state = UP;
		} else {
			err = failed ? 0 : etcd_sleep(e, (unsigned)(ttl * 1000 / 3));
			if (!err)
				err = lease_keepalive(e, lease);
		}
		if (err == -ECANCELED)
			break;
		if (!err) {
			failed = 0;
			backoff = GVM_ETCD_BACKOFF_MIN_MS;
			continue;
		}
		if (err == -ENOENT) { /* the lease expired: the key is gone */
			lease = 0;
			if (state == UP)
				gvm_warn("etcd: lost: %s; registering again with a new lease",
					 e->why);
			state = state == UP ? DOWN : state;
		}
		etcd_next_endpoint(e);
		if (++failed < e->n_endpoints)
			continue;
		if (state == UP)
			gvm_warn("etcd: lost: %s; registering again with a new lease", e->why);
		else if (state == NEVER && !warned)
			gvm_warn("etcd: cannot register yet: %s; retrying", e->why);
		warned = true;
		state = state == UP ? DOWN : state;
		lease = 0;
		failed = 0;
		if (etcd_sleep(e, backoff))
			break;
		backoff = backoff_next(backoff);
	}
	return NULL;
}

/* ---- broker side: the set ---- */

static int donor_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gvm_etcd_donor *)a)->addr,
		      ((const struct gvm_etcd_donor *)b)->addr);
}

static bool donor_same(const struct gvm_etcd_donor *a, const struct gvm_etcd_donor *b)
{
	return !strcmp(a->addr, b->addr) && a->weight == b->weight &&
	       a->capacity_bytes == b->capacity_bytes;
}

/* Binary search: true if addr is in the set; *at its index or where it goes. */
static bool set_find(const struct gvm_etcd *e, const char *addr, unsigned *at)
{
	unsigned lo = 0, hi = e->n_set;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(e->set[mid].addr, addr);

		if (c == 0) {
			*at = mid;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return false;
}

static void skip(struct gvm_etcd *e, const char *key, size_t key_len, const char *why)
{
	char text[ETCD_TEXT_MAX_BYTES + 1];

	atomic_fetch_add(&e->skipped, 1);
	printable(key, key_len, text, sizeof(text));
	gvm_log_limited(&e->skip_log, GVM_LOG_WARN, "etcd: skipping key %s: %s", text, why);
}

static void skip_full(struct gvm_etcd *e, const char *addr)
{
	char why[64];

	snprintf(why, sizeof(why), "the set holds %u donors already", GVM_ETCD_DONORS_MAX);
	skip(e, addr, strlen(addr), why);
}

/* Adds or replaces d: whether the set changed. */
static bool set_put(struct gvm_etcd *e, const struct gvm_etcd_donor *d)
{
	unsigned at;

	if (set_find(e, d->addr, &at)) {
		if (donor_same(&e->set[at], d))
			return false;
		e->set[at] = *d;
		return true;
	}
	if (e->n_set == GVM_ETCD_DONORS_MAX) {
		skip_full(e, d->addr);
		return false;
	}
	memmove(&e->set[at + 1], &e->set[at], (e->n_set - at) * sizeof(e->set[0]));
	e->set[at] = *d;
	e->n_set++;
	return true;
}

static bool set_remove(struct gvm_etcd *e, const char *addr)
{
	unsigned at;

	if (!set_find(e, addr, &at))
		return false;
	memmove(&e->set[at], &e->set[at + 1], (e->n_set - at - 1) * sizeof(e->set[0]));
	e->n_set--;
	return true;
}

/* A key-value of etcd's (kv is hostile): 0 and *d, whose addr is the key's
 * name after the prefix; -ENOENT when the key is unusable (logged, counted);
 * -EINVAL when only the value is (logged, counted; d->addr is set). */
static int kv_donor(struct gvm_etcd *e, struct json_object *kv, bool want_value,
		    struct gvm_etcd_donor *d)
{
	uint8_t key[ETCD_KEY_MAX_BYTES], val[GVM_ETCD_VALUE_MAX_BYTES];
	size_t klen = 0, vlen = 0, len;
	const char *s;
	char why[256];
	int err;

	memset(d, 0, sizeof(*d));
	if (!json_object_is_type(kv, json_type_object) || !(s = json_str_field(kv, "key", &len)) ||
	    b64_decode(s, len, key, sizeof(key), &klen)) {
		snprintf(why, sizeof(why), "its key is not base64 of at most %u bytes",
			 ETCD_KEY_MAX_BYTES);
		skip(e, "?", 1, why);
		return -ENOENT;
	}
	if (klen <= e->prefix_len || memcmp(key, e->prefix, e->prefix_len) ||
	    klen - e->prefix_len >= sizeof(d->addr) ||
	    memchr(key + e->prefix_len, '\0', klen - e->prefix_len)) {
		skip(e, (const char *)key, klen, "not the prefix and an address");
		return -ENOENT;
	}
	memcpy(d->addr, key + e->prefix_len, klen - e->prefix_len);
	if (!want_value)
		return 0;
	s = json_str_field(kv, "value", &len);
	err = !s ? -EINVAL
	      : len > B64_LEN(GVM_ETCD_VALUE_MAX_BYTES)
		  ? -EFBIG
		  : b64_decode(s, len, val, sizeof(val), &vlen);
	if (err == -EFBIG)
		snprintf(why, sizeof(why), "its value is over %u bytes", GVM_ETCD_VALUE_MAX_BYTES);
	else if (err)
		snprintf(why, sizeof(why), "its value is not base64");
	else
		err = donor_parse(d->addr, (const char *)val, vlen, d, why, sizeof(why));
	if (err)
		skip(e, (const char *)key, klen, why);
	return err;
}

/* Reads every key under the prefix into a new set: 0, *rev (the revision
 * read at) and *changed (the set differs from the one before). */
static int watch_read_all(struct gvm_etcd *e, int64_t *rev, bool *changed)
{
	struct json_object *req = json_object_new_object(), *ans = NULL, *hdr, *kvs = NULL;
	struct gvm_etcd_donor *prev = e->set;
	unsigned n = 0, prev_n = e->n_set;
	size_t count;
	int err = -ENOMEM;

	if (req && !json_add_b64(req, "key", e->prefix, e->prefix_len) &&
	    !json_add_b64(req, "range_end", e->range_end, e->prefix_len))
		err = etcd_call(e, "/v3/kv/range", req, GVM_ETCD_RANGE_TIMEOUT_MS, &ans);
	json_object_put(req);
	if (err)
		return err;
	hdr = json_obj_field(ans, "header");
	if (!hdr || !json_int_field(hdr, "revision", rev) || *rev <= 0 ||
	    (json_object_object_get_ex(ans, "kvs", &kvs) &&
	     !json_object_is_type(kvs, json_type_null) &&
	     !json_object_is_type(kvs, json_type_array))) {
		json_object_put(ans);
		return etcd_fail(e, -EPROTO, "/v3/kv/range: no header or kvs in the answer");
	}
	count = json_object_is_type(kvs, json_type_array) ? json_object_array_length(kvs) : 0;
	for (size_t i = 0; i < count; i++) {
		struct gvm_etcd_donor d;

		if (kv_donor(e, json_object_array_get_idx(kvs, i), true, &d))
			continue;
		if (n == GVM_ETCD_DONORS_MAX) {
			skip_full(e, d.addr);
			continue;
		}
		e->spare[n++] = d;
	}
	json_object_put(ans);
	qsort(e->spare, n, sizeof(e->spare[0]), donor_cmp);
	/* etcd lists a key once; an answer listing one twice keeps one. */
	if (n) {
		unsigned kept = 1;

		for (unsigned i = 1; i < n; i++)
			if (strcmp(e->spare[i].addr, e->spare[kept - 1].addr))
				e->spare[kept++] = e->spare[i];
		n = kept;
	}
	*changed = n != prev_n;
	for (unsigned i = 0; i < n && !*changed; i++)
		*changed = !donor_same(&e->spare[i], &prev[i]);
	e->set = e->spare;
	e->n_set = n;
	e->spare = prev;
	return 0;
}

/* One message of the watch stream: its events applied, the set handed
 * over when it changed. */
static int watch_msg(struct etcd_resp *r, struct json_object *msg)
{
	struct gvm_etcd *e = r->e;
	struct json_object *res, *events;
	char text[ETCD_TEXT_MAX_BYTES + 1];
	bool changed = false;
	int64_t compact = 0;
	size_t count;

	res = json_object_is_type(msg, json_type_object) ? json_obj_field(msg, "result") : NULL;
	if (!res) {
		etcd_error_text(msg, text, sizeof(text));
		return etcd_fail(e, -EIO, "/v3/watch: %s",
				 text[0] ? text : "a message without result");
	}
	if (json_true_field(res, "canceled") ||
	    !json_int_field(res, "compact_revision", &compact) || compact) {
		size_t len;
		const char *why = json_str_field(res, "cancel_reason", &len);

		printable(why ? why : "", len, text, sizeof(text));
		return etcd_fail(e, -ECONNABORTED,
				 "/v3/watch: canceled by etcd%s%s (compacted at %lld)",
				 text[0] ? ": " : "", text, (long long)compact);
	}
	if (!json_object_object_get_ex(res, "events", &events) ||
	    json_object_is_type(events, json_type_null))
		return 0; /* created, or progress */
	if (!json_object_is_type(events, json_type_array))
		return etcd_fail(e, -EPROTO, "/v3/watch: events is not an array");
	count = json_object_array_length(events);
	for (size_t i = 0; i < count; i++) {
		struct json_object *ev = json_object_array_get_idx(events, i), *kv;
		struct gvm_etcd_donor d;
		const char *type;
		size_t len;
		bool del;
		int err;

		if (!json_object_is_type(ev, json_type_object) ||
		    !(type = json_str_field(ev, "type", &len)) ||
		    (strcmp(type, "") && strcmp(type, "PUT") && strcmp(type, "DELETE")) ||
		    !json_object_object_get_ex(ev, "kv", &kv)) {
			skip(e, "?", 1, "an event neither PUT nor DELETE of a key");
			continue;
		}
		del = !strcmp(type, "DELETE");
		err = kv_donor(e, kv, !del, &d);
		if (err == -ENOENT)
			continue;
		/* A key whose value is now malformed no longer names a donor. */
		if (del || err)
			changed |= set_remove(e, d.addr);
		else
			changed |= set_put(e, &d);
	}
	if (changed)
		e->cb(e->ctx, 0, e->set, e->n_set);
	return 0;
}

/* Watches the prefix from revision from until the stream breaks: -errno. */
static int watch_stream(struct gvm_etcd *e, int64_t from)
{
	struct json_object *req = json_object_new_object(), *create = json_object_new_object();
	struct etcd_resp r = {.e = e, .on_msg = watch_msg};
	const char *body;
	int err = -ENOMEM;

	if (req && create && !json_add_b64(create, "key", e->prefix, e->prefix_len) &&
	    !json_add_b64(create, "range_end", e->range_end, e->prefix_len) &&
	    !json_add_int(create, "start_revision", from)) {
		err = json_add(req, "create_request", create);
		create = NULL;
	}
	body = err ? NULL : json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (body)
		err = etcd_post(e, "/v3/watch", body, 0, &r);
	else
		err = etcd_fail(e, -ENOMEM, "/v3/watch: out of memory");
	if (!err)
		err = etcd_fail(e, -ECONNRESET, "/v3/watch: the stream ended");
	json_object_put(r.msg);
	json_object_put(create);
	json_object_put(req);
	return err;
}

/* Reads the set, hands it over, watches; a read that fails moves to the
 * next endpoint at once, and only a whole round failing is an outage
 * (reported once) with a backoff before the next round. */
static void *watch_main(struct gvm_etcd *e)
{
	unsigned backoff = GVM_ETCD_BACKOFF_MIN_MS, failed = 0;
	bool first = true, out = false, changed = false;
	uint64_t started;
	int64_t rev;
	int err;

	while (!atomic_load(&e->stop)) {
		err = watch_read_all(e, &rev, &changed);
		if (err == -ECANCELED)
			break;
		if (err) {
			etcd_next_endpoint(e);
			if (++failed < e->n_endpoints)
				continue;
			failed = 0;
			if (!out) {
				gvm_warn("etcd: %s donors under %s: %s; retrying",
					 first ? "cannot read" : "lost", e->prefix, e->why);
				e->cb(e->ctx, err, NULL, 0);
				out = true;
			}
			if (etcd_sleep(e, backoff))
				break;
			backoff = backoff_next(backoff);
			continue;
		}
		failed = 0;
		if (first || out)
			gvm_info("etcd: %s%u donor%s under %s at %s", out ? "back: " : "", e->n_set,
				 e->n_set == 1 ? "" : "s", e->prefix, e->endpoints[e->cur]);
		if (first || out || changed)
			e->cb(e->ctx, 0, e->set, e->n_set);
		first = out = false;
		started = now_ms();
		err = watch_stream(e, rev + 1);
		if (err == -ECANCELED)
			break;
		gvm_debug("etcd: watch ended: %s; reading again", e->why);
		/* A watch that keeps breaking at once is read again ever more slowly. */
		if (now_ms() - started >= GVM_ETCD_BACKOFF_MAX_MS) {
			backoff = GVM_ETCD_BACKOFF_MIN_MS;
		} else {
			if (etcd_sleep(e, backoff))
				break;
			backoff = backoff_next(backoff);
		}
	}
	return NULL;
}

/* ---- the handle and its thread ---- */

int gvm_etcd_create(struct gvm_etcd **out, const char *endpoints, const char *prefix, char *why,
		    size_t n)
{
	struct gvm_etcd *e;
	const char *s = endpoints;
	CURLcode rc;
	int err;

	e = calloc(1, sizeof(*e));
	if (!e) {
		snprintf(why, n, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&e->stop, false);
	atomic_init(&e->skipped, 0);
	e->skip_log = (struct gvm_log_limit)GVM_LOG_LIMIT_INIT(ETCD_SKIP_LOG_MS);
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	err = prefix_parse(e, prefix, why, n);
	while (!err) {
		size_t len = strcspn(s, ",");

		if (e->n_endpoints == GVM_ETCD_ENDPOINTS_MAX) {
			snprintf(why, n, "etcd endpoints: more than %u", GVM_ETCD_ENDPOINTS_MAX);
			err = -EINVAL;
			break;
		}
		err = endpoint_parse(s, len, e->endpoints[e->n_endpoints++], why, n);
		if (!s[len])
			break;
		s += len + 1;
	}
	if (!err && (rc = curl_global_init(CURL_GLOBAL_DEFAULT))) {
		snprintf(why, n, "libcurl: global init failed: %s", curl_easy_strerror(rc));
		err = rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
	}
	e->curl_inited = !err;
	if (err) {
		gvm_etcd_destroy(e); /* undoes all of the above */
		return err;
	}
	*out = e;
	return 0;
}

/* The transfer options every request shares. */
static int easy_setup(struct gvm_etcd *e)
{
	CURL *c = e->easy;

	if (curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http") ||
	    /* No http_proxy from the environment: a proxy is a name to resolve. */
	    curl_easy_setopt(c, CURLOPT_PROXY, "") ||
	    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) ||
	    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, GVM_ETCD_CONNECT_TIMEOUT_MS) ||
	    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) ||
	    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, GVM_ETCD_KEEPALIVE_IDLE_S) ||
	    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, GVM_ETCD_KEEPALIVE_INTERVAL_S) ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers) ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, e->curl_why) ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, resp_write))
		return -EINVAL;
	return 0;
}

static void *etcd_thread(void *arg)
{
	struct gvm_etcd *e = arg;

	pthread_setname_np(pthread_self(), "gvm-etcd");
	pthread_mutex_lock(&e->lock);
	e->running = true;
	pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return e->main(e);
}

/* Makes the curl handles and starts the thread with every signal blocked;
 * returns once the thread runs, its start-up calls made. */
static int etcd_start(struct gvm_etcd *e, void *(*fn)(struct gvm_etcd *e))
{
	struct curl_slist *h;
	sigset_t all, old;
	int err;

	if (e->started)
		return -EBUSY;
	if (!e->multi)
		e->multi = curl_multi_init();
	if (!e->easy)
		e->easy = curl_easy_init();
	if (!e->headers) {
		h = curl_slist_append(NULL, "Content-Type: application/json");
		e->headers = h ? curl_slist_append(h, "Expect:") : NULL;
		if (!e->headers)
			curl_slist_free_all(h);
	}
	if (!e->multi || !e->easy || !e->headers)
		return -ENOMEM;
	err = easy_setup(e);
	if (err)
		return err;
	e->main = fn;
	/* The log's first gmtime_r reads /etc/localtime: here, not in the thread. */
	tzset();
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&e->thread, NULL, etcd_thread, e);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return err;
	e->started = true;
	pthread_mutex_lock(&e->lock);
	while (!e->running)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

int gvm_etcd_register(struct gvm_etcd *e, const struct gvm_etcd_donor *self, unsigned ttl_s)
{
	char why[256];

	if (gvm_etcd_check_donor(self, why, sizeof(why)) || ttl_s < GVM_ETCD_TTL_MIN_S ||
	    ttl_s > GVM_ETCD_TTL_MAX_S || e->prefix_len + strlen(self->addr) >= ETCD_KEY_MAX_BYTES)
		return -EINVAL;
	if (e->started)
		return -EBUSY;
	e->self = *self;
	e->ttl_s = ttl_s;
	return etcd_start(e, register_main);
}

int gvm_etcd_watch(struct gvm_etcd *e, gvm_etcd_set_cb cb, void *ctx)
{
	if (!cb)
		return -EINVAL;
	if (e->started)
		return -EBUSY;
	if (!e->set)
		e->set = calloc(GVM_ETCD_DONORS_MAX, sizeof(e->set[0]));
	if (!e->spare)
		e->spare = calloc(GVM_ETCD_DONORS_MAX, sizeof(e->spare[0]));
	if (!e->set || !e->spare)
		return -ENOMEM;
	e->cb = cb;
	e->ctx = ctx;
	return etcd_start(e, watch_main);
}

uint64_t gvm_etcd_skipped(const struct gvm_etcd *e)
{
	return atomic_load(&e->skipped);
}

void gvm_etcd_destroy(struct gvm_etcd *e)
{
	if (!e)
		return;
	if (e->started) {
		atomic_store(&e->stop, true);
		curl_multi_wakeup(e->multi);
		pthread_join(e->thread, NULL);
	}
	curl_easy_cleanup(e->easy);
	curl_multi_cleanup(e->multi);
	curl_slist_free_all(e->headers);
	if (e->curl_inited)
		curl_global_cleanup();
	free(e->set);
	free(e->spare);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	free(e);
}
