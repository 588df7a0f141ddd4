/* test_token.c: the one-time tokens of /dev/gvmmem (broker/token.c): one
 * user asking in a loop gets its quota and then EDQUOT, never another
 * user's live token; a full table refuses rather than evicts; a token
 * works once, for its own uid and process, within its lifetime. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "token.h"

static void test_one_user_gets_its_quota_and_others_still_get_tokens(void **state)
{
	uint8_t victim[GVMMEM_TOKEN_BYTES], t[GVMMEM_TOKEN_BYTES];
	char why[160];

	(void)state;
	/* The victim asks first; then the flooder asks 100 times. */
	assert_int_equal(bk_token_issue(getpid(), 1000, victim), 0);
	for (unsigned i = 0; i < BK_TOKENS_PER_UID; i++)
		assert_int_equal(bk_token_issue(getpid(), 2000, t), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(bk_token_issue(getpid(), 2000, t), -EDQUOT);
	/* The victim's token still works, and it can get more. */
	assert_int_equal(bk_token_redeem(victim, sizeof(victim), getpid(), 1000, why, sizeof(why)), 0);
	assert_int_equal(bk_token_issue(getpid(), 1000, victim), 0);
	assert_int_equal(bk_token_redeem(victim, sizeof(victim), getpid(), 1000, why, sizeof(why)), 0);
	/* Once only. */
	assert_int_equal(bk_token_redeem(victim, sizeof(victim), getpid(), 1000, why, sizeof(why)),
			 -EACCES);
	assert_non_null(strstr(why, "unknown or already used"));
}

static void test_a_full_table_refuses_and_takes_no_live_token(void **state)
{
	uint8_t mine[GVMMEM_TOKEN_BYTES], t[GVMMEM_TOKEN_BYTES];
	char why[160];
	unsigned issued = 0;

	(void)state;
	assert_int_equal(bk_token_issue(getpid(), 3000, mine), 0);
	/* Many users, each within its quota, fill every slot. */
	for (uid_t u = 10000; issued < BK_TOKENS_MAX; u++)
		for (unsigned k = 0; k < BK_TOKENS_PER_UID && issued < BK_TOKENS_MAX; k++) {
			int err = bk_token_issue(getpid(), u, t);

			if (err == -EAGAIN)
				goto full;
			assert_int_equal(err, 0);
			issued++;
		}
full:
	assert_int_equal(bk_token_issue(getpid(), 99999, t), -EAGAIN);
	/* Nobody's live token was given away: the first still redeems. */
	assert_int_equal(bk_token_redeem(mine, sizeof(mine), getpid(), 3000, why, sizeof(why)), 0);
	/* And a redeemed slot is free again. */
	assert_int_equal(bk_token_issue(getpid(), 99999, t), 0);
}

static void test_a_token_is_bound_to_its_uid(void **state)
{
	uint8_t t[GVMMEM_TOKEN_BYTES];
	char why[160];

	(void)state;
	assert_int_equal(bk_token_issue(getpid(), 4000, t), 0);
	assert_int_equal(bk_token_redeem(t, sizeof(t), getpid(), 4001, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "issued to uid 4000"));
	/* Spent by that presentation, whatever happened. */
	assert_int_equal(bk_token_redeem(t, sizeof(t), getpid(), 4000, why, sizeof(why)), -EACCES);
	assert_int_equal(bk_token_redeem(t, 5, getpid(), 4000, why, sizeof(why)), -EACCES);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_user_gets_its_quota_and_others_still_get_tokens),
		cmocka_unit_test(test_a_token_is_bound_to_its_uid),
		/* last: it leaves the table full for 10 s */
		cmocka_unit_test(test_a_full_table_refuses_and_takes_no_live_token),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
