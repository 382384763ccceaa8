/* Runs one command and reports what it cost: its peak RSS and the time from the fork to the
 * first byte on its stdout. The RSS is wait4's ru_maxrss, which also counts the memory of the
 * forked parent before exec: taken from this small process it adds next to nothing (from a
 * Python parent it would add Python's ~14 MB). The command's stdout is drained and discarded; its
 * stderr goes to STDERR_FILE.
 *
 *   footprint_probe STDERR_FILE COMMAND [ARGS...]
 *
 * Prints one JSON line on stdout: {"exit": N, "peak_rss_bytes": B, "first_byte_ms": T, "bytes": K}
 * (first_byte_ms -1 when the command printed nothing). Exit status 0, or 2 on bad usage. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double NowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: footprint_probe STDERR_FILE COMMAND [ARGS...]\n");
    return 2;
  }
  int out[2];
  if (pipe(out) != 0) return 2;
  const double start = NowMs();
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    int err = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out[1], 1);
    if (err >= 0) dup2(err, 2);
    close(out[0]);
    close(out[1]);
    execvp(argv[2], argv + 2);
    _exit(127);
  }
  close(out[1]);
  char buf[4096];
  double first = -1.0;
  long long total = 0;
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) {
    if (first < 0) first = NowMs() - start;
    total += n;
  }
  close(out[0]);
  int status = 0;
  struct rusage usage;
  if (wait4(pid, &status, 0, &usage) != pid) return 2;
  printf("{\"exit\": %d, \"peak_rss_bytes\": %lld, \"first_byte_ms\": %.3f, \"bytes\": %lld}\n",
         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
         (long long)usage.ru_maxrss * 1024, first, total);
  return 0;
}
