/* identity.c: the broker's host id and host key (identity.h). Both are
 * made once, in the state directory, and read at every start: a host id
 * that changed under running VMs would strand their pages on the donors.
 * An incarnation's secret is HMAC-SHA256(host key, label | host id |
 * incarnation | uid), so checking a re-attach needs no table, survives a
 * restart, and fails for any other uid or host. */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "names.h"

#define IDENTITY_SECRET_LABEL "gvm-incarnation-v1"

/* Writes len bytes into dir/name with mode, atomically (a temporary file
 * renamed into place): a crash leaves the old file or the new, whole. */
static int write_file(const char *dir, const char *name, const void *data, size_t len,
		      mode_t mode, char *why, size_t n)
{
	char path[4096], tmp[4096 + 8];
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) < 0 ||
	    rename(tmp, path) < 0)
		err = -errno;
	if (fd >= 0)
		close(fd);
	if (err) {
		unlink(tmp);
		snprintf(why, n, "state directory %s: cannot write %s: %s", dir, name,
			 strerror(-err));
	}
	return err;
}

/* mkdir -p: the folders above with mode 0755, the state directory 0700. */
static int make_dirs(const char *dir)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

static int load_host_id(struct bk_identity *id, const char *dir, char *why, size_t n)
{
	char path[4096], buf[GVM_HOST_ID_MAX_BYTES + 2], line[GVM_HOST_ID_MAX_BYTES + 2];
	uint8_t raw[GVM_HOST_ID_MAX_BYTES / 2];
	const char *bad;
	ssize_t got;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, BK_HOST_ID_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno != ENOENT) {
		snprintf(why, n, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fd < 0) { /* first start: a random id */
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2hex(id->host_id, sizeof(id->host_id), raw, sizeof(raw));
		snprintf(line, sizeof(line), "%s\n", id->host_id);
		gvm_info("state directory %s: new host id %s", dir, id->host_id);
		return write_file(dir, BK_HOST_ID_FILE, line, strlen(line), 0644, why, n);
	}
	got = read(fd, buf, sizeof(buf) - 1);
	if (got < 0)
		snprintf(why, n, "%s: %s", path, strerror(errno));
	close(fd);
	if (got < 0)
		return -EIO;
	buf[got] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	bad = gvm_host_id_invalid(buf);
	if (bad) {
		snprintf(why, n, "%s: the host id there %s", path, bad);
		return -EINVAL;
	}
	memcpy(id->host_id, buf, strlen(buf) + 1);
	return 0;
}

static int load_host_key(struct bk_identity *id, const char *dir, char *why, size_t n)
{
	char path[4096];
	uint8_t key[BK_HOST_KEY_BYTES];
	int err;

	snprintf(path, sizeof(path), "%s/%s", dir, BK_HOST_KEY_FILE);
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		randombytes_buf(key, sizeof(key));
		err = write_file(dir, BK_HOST_KEY_FILE, key, sizeof(key), 0600, why, n);
		sodium_memzero(key, sizeof(key));
		if (err)
			return err;
	}
	return gvm_key_load(path, &id->host_key, why, n);
}

int bk_identity_load(struct bk_identity *id, const char *state_dir, const char *host_id,
		     char *why, size_t n)
{
	struct stat st;
	int err;

	memset(id, 0, sizeof(*id));
	if (sodium_init() < 0) {
		snprintf(why, n, "libsodium failed to initialise");
		return -EIO;
	}
	err = make_dirs(state_dir);
	if (err) {
		snprintf(why, n, "state directory %s: %s", state_dir, strerror(-err));
		return err;
	}
	if (stat(state_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, n, "state directory %s: not a directory", state_dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid() || st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, n, "state directory %s: must belong to uid %d and not be writable "
			 "by group or others (it holds the host key)", state_dir, (int)geteuid());
		return -EPERM;
	}
	err = load_host_key(id, state_dir, why, n);
	if (err)
		goto fail;
	if (host_id) {
		memcpy(id->host_id, host_id, strlen(host_id) + 1);
		return 0;
	}
	err = load_host_id(id, state_dir, why, n);
	if (err)
		goto fail;
	return 0;
fail: /* no half identity: the host key read already is wiped */
	bk_identity_wipe(id);
	return err;
}

void bk_identity_secret(const struct bk_identity *id, uid_t uid,
			const uint8_t incarnation[GVM_INCARNATION_BYTES],
			uint8_t out[GVM_INCARNATION_SECRET_BYTES])
{
	crypto_auth_hmacsha256_state st;
	uint8_t u[4] = { (uint8_t)uid, (uint8_t)(uid >> 8), (uint8_t)(uid >> 16),
			 (uint8_t)(uid >> 24) };

	_Static_assert(GVM_INCARNATION_SECRET_BYTES == crypto_auth_hmacsha256_BYTES,
		       "the secret is one HMAC-SHA256");
	crypto_auth_hmacsha256_init(&st, id->host_key.bytes, id->host_key.len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)IDENTITY_SECRET_LABEL,
				      sizeof(IDENTITY_SECRET_LABEL));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)id->host_id, sizeof(id->host_id));
	crypto_auth_hmacsha256_update(&st, incarnation, GVM_INCARNATION_BYTES);
	crypto_auth_hmacsha256_update(&st, u, sizeof(u));
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

void bk_identity_new(uint8_t incarnation[GVM_INCARNATION_BYTES])
{
	randombytes_buf(incarnation, GVM_INCARNATION_BYTES);
}

bool bk_identity_check(const struct bk_identity *id, uid_t uid, const uint8_t *incarnation,
		       size_t incarnation_len, const uint8_t *secret, size_t secret_len)
{
	uint8_t want[GVM_INCARNATION_SECRET_BYTES];
	bool ok;

	if (incarnation_len != GVM_INCARNATION_BYTES || secret_len != sizeof(want))
		return false;
	bk_identity_secret(id, uid, incarnation, want);
	ok = sodium_memcmp(want, secret, sizeof(want)) == 0;
	sodium_memzero(want, sizeof(want));
	return ok;
}

void bk_identity_wipe(struct bk_identity *id)
{
	sodium_memzero(id, sizeof(*id));
}
