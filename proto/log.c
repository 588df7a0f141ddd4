/* log.c: leveled logging to stderr for every gvmmem daemon and tool. One
 * fprintf per line under the stdio lock, so threads never interleave. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "gvm";
static enum gvm_log_level log_level = GVM_LOG_INFO;
static const char *const log_names[] = { "error", "warn", "info", "debug" };

void gvm_log_init(const char *progname, enum gvm_log_level level)
{
	log_prog = progname;
	log_level = level;
}

int gvm_log_parse_level(const char *s, enum gvm_log_level *level)
{
	for (unsigned i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*level = (enum gvm_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int gvm_log_enabled(enum gvm_log_level level)
{
	return level <= log_level;
}

static void log_line(enum gvm_log_level level, const char *line)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: %s\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000), log_prog,
		(int)getpid(), log_names[level], line);
}

void gvm_log(enum gvm_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!gvm_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_line(level, line);
}

void gvm_log_limited(struct gvm_log_limit *lim, enum gvm_log_level level, const char *fmt, ...)
{
	struct timespec ts;
	uint64_t now;
	char line[1024];
	va_list ap;
	int n;

	if (!gvm_log_enabled(level))
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	if (now < lim->next_ms) {
		lim->suppressed++;
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (lim->suppressed && n >= 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, " (and %u more like it)", lim->suppressed);
	lim->suppressed = 0;
	lim->next_ms = now + lim->interval_ms;
	log_line(level, line);
}
