/* gvm_proto.h: limits and defaults of the gvmmem wire protocols, shared by
 * every binary. The codec (frame.c) enforces them before any allocation. */
#ifndef GVM_PROTO_H
#define GVM_PROTO_H

/* Donor frames. 2: AUTH names the host. 3: LIST, and namespace ids that
 * carry a random tag, so an id from before a donor's restart is unknown
 * after it instead of naming another namespace. */
#define GVM_PROTO_VERSION 3u
#define GVM_CTL_VERSION 1u       /* control socket (Hello.version) and /dev/gvmmem */
#define GVM_PAGE_SIZE 4096u
#define GVM_HUGE_PAGE_SIZE (2u << 20) /* the hugetlb page size guest RAM may use */
#define GVM_HUGE_PAGE_PAGES (GVM_HUGE_PAGE_SIZE / GVM_PAGE_SIZE)

/* Donor protocol frame bounds. */
#define GVM_FRAME_LEN_BYTES 4u          /* big-endian header length prefix */
#define GVM_FRAME_HDR_MAX_BYTES 1024u   /* serialized Frame header */
/* Pages in one READ/WRITE: 2 MiB, so that a huge page moves in one. */
#define GVM_FRAME_PAGES_MAX 512u
#define GVM_FRAME_BITMAP_MAX_BYTES (GVM_FRAME_PAGES_MAX / 8u)
#define GVM_FRAME_DATA_MAX_BYTES (GVM_FRAME_PAGES_MAX * GVM_PAGE_SIZE)
/* A sealed page's authentication tag (broker/seal.c): a donor stores it
 * beside the page and hands it back with it (Frame.tag_bytes). */
#define GVM_PAGE_TAG_BYTES 16u
/* The largest page payload: every page with its tag. */
#define GVM_FRAME_PAYLOAD_MAX_BYTES (GVM_FRAME_PAGES_MAX * (GVM_PAGE_SIZE + GVM_PAGE_TAG_BYTES))
#define GVM_FRAME_SMALL_PAYLOAD_MAX_BYTES 4096u /* AUTH, STATS, PING payloads */
/* Pages one LIST asks about: its reply, a bit per page, is 1 MiB at most
 * (8M pages, 32 GiB of guest memory). */
#define GVM_LIST_PAGES_MAX 8388608u
#define GVM_NS_NAME_MAX_BYTES 63u
#define GVM_HOST_ID_MAX_BYTES 16u   /* a-z 0-9 -; a namespace name starts with it */
#define GVM_INCARNATION_BYTES 12u   /* random id of one VM attachment */
#define GVM_INCARNATION_SECRET_BYTES 32u /* proves a re-attach */
#define GVM_ERROR_MAX_BYTES 255u

/* Authentication: HMAC-SHA256 challenge/response on the cluster key. */
#define GVM_AUTH_NONCE_BYTES 32u
#define GVM_AUTH_MAC_BYTES 32u
#define GVM_KEY_MIN_BYTES 16u
#define GVM_KEY_MAX_BYTES 4096u

/* Control protocol (client-lib <-> broker, AF_UNIX SOCK_SEQPACKET). */
#define GVM_CTL_MSG_MAX_BYTES (64u * 1024u) /* one datagram */
#define GVM_CTL_DONORS_PAGE 256u /* donors per Donors message: fits one datagram */
#define GVM_CTL_REGIONS_MAX 64u
#define GVM_CTL_FDS_MAX (GVM_CTL_REGIONS_MAX + 2u) /* uffd, a memfd per region, maps */
/* Display labels (names.h): never part of a namespace or a path. */
#define GVM_VM_NAME_MAX_BYTES 63u
#define GVM_REGION_NAME_MAX_BYTES 63u
#define GVM_DEFAULT_SOCKET "/run/gvm/broker.sock"
#define GVM_DEFAULT_EXTENT_PAGES 32u

#define GVM_DONOR_DEFAULT_PORT "7700"
#define GVM_DEFAULT_KEY_FILE "/etc/gvm/cluster.key"

#endif
