/* control.h: the broker's client socket (DESIGN.md, attach handshake): a
 * SOCK_SEQPACKET listener whose clients say Hello, receive a
 * /dev/userfaultfd descriptor, Attach their regions (attach.c) and stay
 * connected while their VM runs; gvmctl asks it for Stats. */
#ifndef BK_CONTROL_H
#define BK_CONTROL_H

#include "broker.h"

int bk_control_start(struct bk_broker *b, char *why, size_t n);
void bk_control_stop(struct bk_broker *b);

#endif
