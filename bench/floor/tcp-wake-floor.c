// The machine's floor for waking N parked HTTP clients, without Node: a server process (pinned to one core)
// accepts N loopback connections, reads one request from each, then writes a canned HTTP response to all of
// them; a client process (pinned to the other core) has sent the N requests and times, with epoll, when
// each response arrives. Latency is from just before the server's first write (CLOCK_MONOTONIC, shared by
// both processes) to the client's read. Built and run by bench/metadata.ts when a C compiler is present.
//
// Usage: tcp-wake-floor N SERVER_CPU CLIENT_CPU  → prints one JSON line: {"p50":…,"p99":…,"max":…,"writeLoop":…}
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s N SERVER_CPU CLIENT_CPU\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[1]);
  int server_cpu = atoi(argv[2]), client_cpu = atoi(argv[3]);
  /* Shared with the client: a ready flag (shared[0]), then the per-connection arrival times. */
  double *shared = mmap(NULL, sizeof(double) * (size_t)(n + 1), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return perror("mmap"), 1;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 65535)) return perror("listen"), 1;
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  const char req[] = "GET /latest/version?wait=true&value=1&maxWait=120 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  const char resp[] =
      "HTTP/1.1 200 OK\r\nETag: \"abcdefghijklmnopqrstuv\"\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: 20\r\nConnection: keep-alive\r\n\r\n\"2-0000000000000000\"";

  pid_t child = fork();
  if (child == 0) {
    pin(client_cpu);
    int ep = epoll_create1(0);
    int *fds = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
      fds[i] = socket(AF_INET, SOCK_STREAM, 0);
      if (connect(fds[i], (struct sockaddr *)&a, sizeof a)) _exit(3);
      if (write(fds[i], req, sizeof req - 1) < 0) _exit(3);
      struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
      epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    shared[0] = 1; /* all requests sent */
    int got = 0;
    struct epoll_event evs[256];
    char buf[512];
    while (got < n) {
      int k = epoll_wait(ep, evs, 256, 60000);
      if (k <= 0) _exit(4);
      double t = now_ms();
      for (int j = 0; j < k; j++) {
        uint32_t i = evs[j].data.u32;
        if (read(fds[i], buf, sizeof buf) > 0 && shared[1 + i] == 0) {
          shared[1 + i] = t;
          got++;
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
      }
    }
    _exit(0);
  }

  pin(server_cpu);
  int *conns = calloc((size_t)n, sizeof(int));
  char buf[512];
  for (int i = 0; i < n; i++) {
    conns[i] = accept(ls, NULL, NULL);
    if (conns[i] < 0 || read(conns[i], buf, sizeof buf) <= 0) return perror("accept/read"), 1;
  }
  while (shared[0] == 0) usleep(1000);
  usleep(200000); /* let the client settle into epoll_wait */
  double t0 = now_ms();
  for (int i = 0; i < n; i++)
    if (write(conns[i], resp, sizeof resp - 1) < 0) return perror("write"), 1;
  double loop = now_ms() - t0;
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return fprintf(stderr, "client failed (%d)\n", status), 1;
  double *lat = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++) lat[i] = shared[1 + i] - t0;
  qsort(lat, (size_t)n, sizeof(double), cmp);
  int p99 = (int)(0.99 * n + 0.999999) - 1;
  printf("{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f,\"writeLoop\":%.2f}\n", lat[(n + 1) / 2 - 1], lat[p99 < 0 ? 0 : p99], lat[n - 1], loop);
  return 0;
}
