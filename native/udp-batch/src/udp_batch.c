// Batched UDP for the DNS server: recvmmsg/sendmmsg on a non-blocking socket watched by a libuv poll
// handle on Node's own event loop.
//
// Why: on the hosts drover runs on (VMs with page-table isolation), a datagram's syscall and Node's
// per-datagram dgram machinery (a Buffer, an rinfo object with an address string, one callback into
// JS, a send request) cost more than answering the query itself. Here one readable event drains up
// to BATCH datagrams per syscall into memory JavaScript shares (Buffers it allocated and passed in),
// calls JavaScript once per batch, and sends the replies it wrote with one sendmmsg.
//
// Shared layout, per slot i of BATCH (JavaScript reads and writes the same memory):
//   in  data  [i * SLOT, i * SLOT + len)      one received datagram
//   out data  [i * SLOT, i * SLOT + len)      one reply
//   meta u32  [i * 8 + 0] length (0: drop; a truncated datagram is received with length 0)
//             [i * 8 + 1] family, 4 or 6 (a v4-mapped address on an IPv6 socket is reported as 4)
//             [i * 8 + 2] port
//             [i * 8 + 3] IPv4 address as a number (host order); for 6: bytes 12..27 of the slot's
//                         meta hold the 16 address bytes
// The JavaScript callback gets the number of datagrams received and returns the number of replies it
// wrote to out slots 0..n-1 (with their own meta); they are sent before the next batch is read.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>

#define BATCH 64
#define SLOT 4096
#define META 8
/* Batches per readable event before yielding to the rest of the event loop (timers, TCP, upstreams). */
#define MAX_ROUNDS 16

typedef struct udp_sock {
  uv_poll_t poll;
  int fd;
  int family;
  int closed;
  napi_env env;
  napi_ref on_batch;
  napi_ref buffers[4];
  napi_async_context actx;
  uint8_t *in;
  uint32_t *in_meta;
  uint8_t *out;
  uint32_t *out_meta;
  struct mmsghdr in_msgs[BATCH];
  struct iovec in_iov[BATCH];
  struct sockaddr_in6 in_addr[BATCH];
  struct mmsghdr out_msgs[BATCH];
  struct iovec out_iov[BATCH];
  struct sockaddr_in6 out_addr[BATCH];
  /* Counters read by stats(): replies the kernel refused (buffer full) and truncated datagrams. */
  double send_errors;
  double truncated;
  double batches;
  double received;
} udp_sock;

#define CHECK(call)                                                                 \
  do {                                                                              \
    if ((call) != napi_ok) {                                                        \
      const napi_extended_error_info *info = NULL;                                  \
      napi_get_last_error_info(env, &info);                                         \
      bool pending = false;                                                         \
      napi_is_exception_pending(env, &pending);                                     \
      if (!pending) napi_throw_error(env, "EUDPBATCH", info && info->error_message ? info->error_message : "N-API call failed"); \
      return NULL;                                                                  \
    }                                                                               \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  const char *code = uv_err_name(uv_translate_sys_error(err));
  snprintf(msg, sizeof msg, "%s: %s (%s)", what, strerror(err), code);
  napi_value m, c, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_value errnum;
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, e, "errno", errnum);
  napi_set_named_property(env, e, "syscall", m);
  napi_set_named_property(env, e, "code", c);
  napi_throw(env, e);
  return NULL;
}

static void fill_meta(udp_sock *s, uint32_t *meta, const struct sockaddr_in6 *sa, uint32_t len) {
  meta[0] = len;
  if (sa->sin6_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
    meta[1] = 4;
    meta[2] = ntohs(v4->sin_port);
    meta[3] = ntohl(v4->sin_addr.s_addr);
  } else if (IN6_IS_ADDR_V4MAPPED(&sa->sin6_addr)) {
    uint32_t a;
    memcpy(&a, &sa->sin6_addr.s6_addr[12], 4);
    meta[1] = 4;
    meta[2] = ntohs(sa->sin6_port);
    meta[3] = ntohl(a);
  } else {
    meta[1] = 6;
    meta[2] = ntohs(sa->sin6_port);
    memcpy(&meta[3], sa->sin6_addr.s6_addr, 16);
  }
  (void)s;
}

/* The destination of a reply from its meta, in the socket's own family. 0 when it cannot be formed. */
static socklen_t dest_from_meta(const udp_sock *s, const uint32_t *meta, struct sockaddr_in6 *out) {
  memset(out, 0, sizeof *out);
  if (meta[1] == 4 && s->family == AF_INET) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)meta[2]);
    v4->sin_addr.s_addr = htonl(meta[3]);
    return sizeof(struct sockaddr_in);
  }
  if (s->family != AF_INET6) return 0;
  out->sin6_family = AF_INET6;
  out->sin6_port = htons((uint16_t)meta[2]);
  if (meta[1] == 4) {
    uint32_t a = htonl(meta[3]);
    out->sin6_addr.s6_addr[10] = 0xff;
    out->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&out->sin6_addr.s6_addr[12], &a, 4);
  } else {
    memcpy(out->sin6_addr.s6_addr, &meta[3], 16);
  }
  return sizeof(struct sockaddr_in6);
}

static void send_replies(udp_sock *s, int n) {
  int m = 0;
  for (int i = 0; i < n; i++) {
    const uint32_t *meta = &s->out_meta[i * META];
    uint32_t len = meta[0];
    if (len == 0 || len > SLOT) continue;
    socklen_t alen = dest_from_meta(s, meta, &s->out_addr[m]);
    if (alen == 0) continue;
    s->out_iov[m].iov_base = s->out + (size_t)i * SLOT;
    s->out_iov[m].iov_len = len;
    memset(&s->out_msgs[m].msg_hdr, 0, sizeof(struct msghdr));
    s->out_msgs[m].msg_hdr.msg_iov = &s->out_iov[m];
    s->out_msgs[m].msg_hdr.msg_iovlen = 1;
    s->out_msgs[m].msg_hdr.msg_name = &s->out_addr[m];
    s->out_msgs[m].msg_hdr.msg_namelen = alen;
    m++;
  }
  int sent = 0;
  while (sent < m) {
    int r = sendmmsg(s->fd, &s->out_msgs[sent], (unsigned)(m - sent), MSG_DONTWAIT);
    if (r > 0) {
      sent += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    /* The failing message is skipped (buffer full, unreachable destination): UDP, the client retries. */
    s->send_errors++;
    sent++;
  }
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  udp_sock *s = (udp_sock *)handle->data;
  if (s->closed || status < 0 || !(events & UV_READABLE)) return;
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv;
  if (napi_get_reference_value(env, s->on_batch, &cb) != napi_ok || napi_get_global(env, &recv) != napi_ok) {
    napi_close_handle_scope(env, scope);
    return;
  }
  for (int round = 0; round < MAX_ROUNDS && !s->closed; round++) {
    for (int i = 0; i < BATCH; i++) {
      s->in_iov[i].iov_base = s->in + (size_t)i * SLOT;
      s->in_iov[i].iov_len = SLOT;
      memset(&s->in_msgs[i].msg_hdr, 0, sizeof(struct msghdr));
      s->in_msgs[i].msg_hdr.msg_iov = &s->in_iov[i];
      s->in_msgs[i].msg_hdr.msg_iovlen = 1;
      s->in_msgs[i].msg_hdr.msg_name = &s->in_addr[i];
      s->in_msgs[i].msg_hdr.msg_namelen = sizeof(s->in_addr[i]);
    }
    int n = recvmmsg(s->fd, s->in_msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      uint32_t len = s->in_msgs[i].msg_len;
      if (s->in_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
        s->truncated++;
        len = 0;
      }
      fill_meta(s, &s->in_meta[i * META], &s->in_addr[i], len);
    }
    s->batches++;
    s->received += n;
    napi_value argv[1], result;
    napi_create_int32(env, n, &argv[0]);
    napi_status st = napi_make_callback(env, s->actx, recv, cb, 1, argv, &result);
    if (st == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
      break;
    }
    if (st != napi_ok) break;
    int32_t replies = 0;
    if (st == napi_ok && napi_get_value_int32(env, result, &replies) == napi_ok && replies > 0 && !s->closed) {
      send_replies(s, replies > BATCH ? BATCH : replies);
    }
    if (n < BATCH) break;
  }
  napi_close_handle_scope(env, scope);
}

static void release(udp_sock *s) {
  napi_env env = s->env;
  if (s->on_batch) napi_delete_reference(env, s->on_batch);
  for (int i = 0; i < 4; i++)
    if (s->buffers[i]) napi_delete_reference(env, s->buffers[i]);
  if (s->actx) napi_async_destroy(env, s->actx);
  free(s);
}

static void on_closed(uv_handle_t *handle) {
  udp_sock *s = (udp_sock *)handle->data;
  close(s->fd);
  release(s);
}

static napi_value get_buffer(napi_env env, napi_value v, size_t want, void **data, const char *name) {
  bool is_buf = false;
  size_t len = 0;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, v, data, &len) != napi_ok || len < want) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a Buffer of at least %zu bytes", name, want);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  return v;
}

/* open(family, address, port, rcvbuf, sndbuf, inData, inMeta, outData, outMeta, onBatch) → handle */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 10) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "open(family, address, port, rcvbuf, sndbuf, inData, inMeta, outData, outMeta, onBatch)");
    return NULL;
  }
  int32_t family, port, rcvbuf, sndbuf;
  CHECK(napi_get_value_int32(env, argv[0], &family));
  char addr[INET6_ADDRSTRLEN + 1];
  size_t alen;
  CHECK(napi_get_value_string_utf8(env, argv[1], addr, sizeof addr, &alen));
  CHECK(napi_get_value_int32(env, argv[2], &port));
  CHECK(napi_get_value_int32(env, argv[3], &rcvbuf));
  CHECK(napi_get_value_int32(env, argv[4], &sndbuf));
  void *bufs[4];
  const size_t sizes[4] = {BATCH * SLOT, BATCH * META * 4, BATCH * SLOT, BATCH * META * 4};
  const char *names[4] = {"inData", "inMeta", "outData", "outMeta"};
  for (int i = 0; i < 4; i++)
    if (!get_buffer(env, argv[5 + i], sizes[i], &bufs[i], names[i])) return NULL;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[9], &t));
  if (t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "onBatch must be a function");
    return NULL;
  }
  if (port < 0 || port > 65535 || (family != 4 && family != 6)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "family must be 4 or 6 and port 0..65535");
    return NULL;
  }

  struct sockaddr_in6 sa;
  socklen_t salen;
  memset(&sa, 0, sizeof sa);
  if (family == 4) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &v4->sin_addr) != 1) return throw_errno(env, EINVAL, "bad IPv4 address");
    salen = sizeof(struct sockaddr_in);
  } else {
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, addr, &sa.sin6_addr) != 1) return throw_errno(env, EINVAL, "bad IPv6 address");
    salen = sizeof(struct sockaddr_in6);
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (sndbuf > 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (bind(fd, (struct sockaddr *)&sa, salen) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind");
  }

  udp_sock *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return throw_errno(env, ENOMEM, "open");
  }
  s->fd = fd;
  s->family = family == 4 ? AF_INET : AF_INET6;
  s->env = env;
  s->in = bufs[0];
  s->in_meta = bufs[1];
  s->out = bufs[2];
  s->out_meta = bufs[3];
  napi_value resource_name;
  if (napi_create_reference(env, argv[9], 1, &s->on_batch) != napi_ok ||
      napi_create_string_utf8(env, "drover:udp-batch", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_async_init(env, NULL, resource_name, &s->actx) != napi_ok) {
    close(fd);
    release(s);
    return throw_errno(env, ENOMEM, "open");
  }
  for (int i = 0; i < 4; i++) {
    if (napi_create_reference(env, argv[5 + i], 1, &s->buffers[i]) != napi_ok) {
      close(fd);
      release(s);
      return throw_errno(env, ENOMEM, "open");
    }
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &s->poll, fd) != 0) {
    close(fd);
    release(s);
    return throw_errno(env, EINVAL, "uv_poll_init");
  }
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  napi_value handle;
  CHECK(napi_create_external(env, s, NULL, NULL, &handle));
  return handle;
}

static udp_sock *unwrap(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a udp-batch handle");
    return NULL;
  }
  return (udp_sock *)p;
}

/* The arguments of a call whose first argument is a handle: fills argv (argc slots), returns the socket. */
static udp_sock *handle_call(napi_env env, napi_callback_info info, size_t argc, napi_value *argv) {
  size_t got = argc;
  if (napi_get_cb_info(env, info, &got, argv, NULL, NULL) != napi_ok) return NULL;
  if (got < argc) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return NULL;
  }
  return unwrap(env, argv[0]);
}

/* port(handle) → the bound port */
static napi_value js_port(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  udp_sock *s = handle_call(env, info, 1, argv);
  if (!s) return NULL;
  struct sockaddr_in6 sa;
  socklen_t len = sizeof sa;
  if (s->closed || getsockname(s->fd, (struct sockaddr *)&sa, &len) != 0) return throw_errno(env, s->closed ? EBADF : errno, "getsockname");
  napi_value out;
  CHECK(napi_create_int32(env, ntohs(sa.sin6_port), &out));
  return out;
}

/* sendOne(handle, data, length, meta) → true when the kernel took it. meta: a u32 array laid out as one slot's. */
static napi_value js_send_one(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  udp_sock *s = handle_call(env, info, 4, argv);
  if (!s) return NULL;
  void *data, *meta;
  size_t dlen, mlen;
  int32_t len;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &dlen));
  CHECK(napi_get_value_int32(env, argv[2], &len));
  CHECK(napi_get_buffer_info(env, argv[3], &meta, &mlen));
  napi_value result;
  if (s->closed || len <= 0 || (size_t)len > dlen || mlen < META * 4) {
    CHECK(napi_get_boolean(env, false, &result));
    return result;
  }
  struct sockaddr_in6 dest;
  socklen_t alen = dest_from_meta(s, (const uint32_t *)meta, &dest);
  ssize_t r = -1;
  if (alen > 0) {
    do r = sendto(s->fd, data, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&dest, alen);
    while (r < 0 && errno == EINTR);
  }
  if (r < 0) s->send_errors++;
  CHECK(napi_get_boolean(env, r >= 0, &result));
  return result;
}

/* stats(handle) → [batches, datagrams received, send errors, truncated datagrams] */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  udp_sock *s = handle_call(env, info, 1, argv);
  if (!s) return NULL;
  napi_value arr, v;
  CHECK(napi_create_array_with_length(env, 4, &arr));
  double vals[4] = {s->batches, s->received, s->send_errors, s->truncated};
  for (uint32_t i = 0; i < 4; i++) {
    CHECK(napi_create_double(env, vals[i], &v));
    CHECK(napi_set_element(env, arr, i, v));
  }
  return arr;
}

/* close(handle): stops reading; the socket is closed and the memory released once libuv lets go of it. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  udp_sock *s = handle_call(env, info, 1, argv);
  if (!s) return NULL;
  if (!s->closed) {
    s->closed = 1;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_closed);
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"port", NULL, js_port, NULL, NULL, NULL, napi_default, NULL},
      {"sendOne", NULL, js_send_one, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value batch, slot, meta;
  napi_create_int32(env, BATCH, &batch);
  napi_create_int32(env, SLOT, &slot);
  napi_create_int32(env, META, &meta);
  napi_set_named_property(env, exports, "BATCH", batch);
  napi_set_named_property(env, exports, "SLOT", slot);
  napi_set_named_property(env, exports, "META", meta);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
