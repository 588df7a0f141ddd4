/* test_config.c: proto/config.c, the parsing every command line shares:
 * sizes with binary units, HOST:PORT addresses (IPv4, bracketed IPv6, a
 * default port) and the cluster key file's rules (length, permissions). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static void test_sizes_take_binary_units_and_refuse_junk(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(gvm_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(gvm_parse_size("64K", &v), 0);
	assert_int_equal(v, 64 << 10);
	assert_int_equal(gvm_parse_size("512m", &v), 0);
	assert_int_equal(v, 512ull << 20);
	assert_int_equal(gvm_parse_size("4GiB", &v), 0);
	assert_int_equal(v, 4ull << 30);
	assert_int_equal(gvm_parse_size("2TB", &v), 0);
	assert_int_equal(v, 2ull << 40);
	assert_int_equal(gvm_parse_size("", &v), -EINVAL);
	assert_int_equal(gvm_parse_size("-1G", &v), -EINVAL);
	assert_int_equal(gvm_parse_size("1.5G", &v), -EINVAL);
	assert_int_equal(gvm_parse_size("4Q", &v), -EINVAL);
	assert_int_equal(gvm_parse_size("4Gx", &v), -EINVAL);
	assert_int_equal(gvm_parse_size("99999999999T", &v), -ERANGE);
	assert_int_equal(gvm_parse_size("99999999999999999999", &v), -EINVAL);
}

static void test_addresses_parse_v4_v6_and_default_port(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	char text[80];
	socklen_t len;

	(void)state;
	assert_int_equal(gvm_parse_hostport("127.0.0.1:7701", "7700", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(in->sin_port), 7701);
	gvm_format_addr((struct sockaddr *)&ss, text, sizeof(text));
	assert_string_equal(text, "127.0.0.1:7701");
	assert_int_equal(gvm_parse_hostport("127.0.0.2", "7700", &ss, &len), 0);
	assert_int_equal(ntohs(in->sin_port), 7700);
	assert_int_equal(gvm_parse_hostport("[::1]:9", "7700", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(in6->sin6_port), 9);
	gvm_format_addr((struct sockaddr *)&ss, text, sizeof(text));
	assert_string_equal(text, "[::1]:9");
	assert_int_equal(gvm_parse_hostport("localhost:7700", "7700", &ss, &len), 0);

	assert_int_equal(gvm_parse_hostport("", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport("::1:7700", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport("[::1", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport("[::1]x", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport("1.2.3.4:", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport("1.2.3.4:http", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport("1.2.3.4:70000", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport(":7700", "7700", &ss, &len), -EINVAL);
	assert_int_equal(gvm_parse_hostport("no-such-host.invalid:1", "7700", &ss, &len), -ENOENT);
}

static void write_file(const char *path, size_t len, mode_t mode)
{
	char *buf = malloc(len + 1);
	int fd;

	memset(buf, 'k', len);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
	free(buf);
}

static void test_key_file_rules(void **state)
{
	char path[] = "/tmp/gvm-test-key-XXXXXX", why[512];
	struct gvm_key key;
	int fd = mkstemp(path);

	(void)state;
	close(fd);
	write_file(path, 32, 0600);
	assert_int_equal(gvm_key_load(path, &key, why, sizeof(why)), 0);
	assert_int_equal(key.len, 32);
	write_file(path, GVM_KEY_MAX_BYTES, 0400);
	assert_int_equal(gvm_key_load(path, &key, why, sizeof(why)), 0);
	assert_int_equal(key.len, GVM_KEY_MAX_BYTES);

	write_file(path, GVM_KEY_MAX_BYTES + 1, 0600);
	assert_int_equal(gvm_key_load(path, &key, why, sizeof(why)), -EFBIG);
	write_file(path, GVM_KEY_MIN_BYTES - 1, 0600);
	assert_int_equal(gvm_key_load(path, &key, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "need at least 16"));
	write_file(path, 32, 0640);
	assert_int_equal(gvm_key_load(path, &key, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "chmod 600"));
	write_file(path, 32, 0604);
	assert_int_equal(gvm_key_load(path, &key, why, sizeof(why)), -EPERM);
	unlink(path);
	assert_int_equal(gvm_key_load(path, &key, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "head -c 32 /dev/urandom"));
	assert_int_equal(gvm_key_load("/tmp", &key, why, sizeof(why)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes_take_binary_units_and_refuse_junk),
		cmocka_unit_test(test_addresses_parse_v4_v6_and_default_port),
		cmocka_unit_test(test_key_file_rules),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
