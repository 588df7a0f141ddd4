/* log.h: the one logging facility of every gvmmem program: leveled lines on
 * stderr ("<time> <prog>[pid] <level>: <message>"), safe from any thread. */
#ifndef GVM_LOG_H
#define GVM_LOG_H

#include <stdint.h>

enum gvm_log_level { GVM_LOG_ERROR, GVM_LOG_WARN, GVM_LOG_INFO, GVM_LOG_DEBUG };

void gvm_log_init(const char *progname, enum gvm_log_level level);
/* "error", "warn", "info", "debug" -> 0 and *level; else -EINVAL. */
int gvm_log_parse_level(const char *s, enum gvm_log_level *level);
int gvm_log_enabled(enum gvm_log_level level);
void gvm_log(enum gvm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Lines a peer can cause, at most one per interval through one limit: the
 * ones in between are counted, and the next line that passes says how
 * many were left out. Not thread-safe: one limit per thread. */
struct gvm_log_limit {
	unsigned interval_ms;
	uint64_t next_ms;
	unsigned suppressed;
};
#define GVM_LOG_LIMIT_INIT(ms) { (ms), 0, 0 }
void gvm_log_limited(struct gvm_log_limit *lim, enum gvm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define gvm_err(...) gvm_log(GVM_LOG_ERROR, __VA_ARGS__)
#define gvm_warn(...) gvm_log(GVM_LOG_WARN, __VA_ARGS__)
#define gvm_info(...) gvm_log(GVM_LOG_INFO, __VA_ARGS__)
#define gvm_debug(...)                                                         \
	do {                                                                   \
		if (gvm_log_enabled(GVM_LOG_DEBUG))                            \
			gvm_log(GVM_LOG_DEBUG, __VA_ARGS__);                   \
	} while (0)

#endif
