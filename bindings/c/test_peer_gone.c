/* A POS program that serves HTTP in-process keeps running when clients
 * vanish while their answers are being written. A C program starts with
 * SIGPIPE's default action (terminate), unlike a Rust or Python one: a
 * write to a socket whose peer has closed must not raise it, or one phone
 * that drops off the Wi-Fi mid-answer kills the till. Each client here
 * sends its requests in one go and closes before any answer comes: the
 * kernel answers floorbell's first write with a reset, and the next write
 * on that socket fails with EPIPE, raising SIGPIPE unless the writing
 * thread blocks it (a `writev` cannot say MSG_NOSIGNAL). Before session
 * 22 this program died of it (exit 141). Run under valgrind by test.sh. */
#define _XOPEN_SOURCE 700
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "floorbell.h"

#define QR_TOKEN "cq"
#define CONFIG "qr-token = \"" QR_TOKEN "\"\nadmin-token = \"ca\"\nno-mdns = true\n"
#define POLL "GET /api/v4/events?hash=none HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: " QR_TOKEN "\r\n\r\n"

static int failed;
#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (!(cond)) {                                         \
            failed++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                      \
            fputc('\n', stderr);                               \
        }                                                      \
    } while (0)

static int connect_to(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 20, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends `copies` pipelined polls with one send and closes without
 * reading. */
static void ask_and_vanish(uint16_t port, int copies) {
    char requests[1024];
    size_t len = 0;
    for (int i = 0; i < copies && len + strlen(POLL) < sizeof requests; i++) {
        memcpy(requests + len, POLL, strlen(POLL));
        len += strlen(POLL);
    }
    int fd = connect_to(port);
    CHECK(fd >= 0, "cannot connect: %s", strerror(errno));
    if (fd < 0) return;
    ssize_t n = send(fd, requests, len, MSG_NOSIGNAL);
    CHECK(n == (ssize_t)len, "send: %s", strerror(errno));
    close(fd);
}

/* The status line of one poll, read whole ("" on failure). */
static int poll_status(uint16_t port, char *status, size_t cap) {
    status[0] = '\0';
    int fd = connect_to(port);
    if (fd < 0) return -1;
    const char *req = "GET /api/v4/events?hash=none HTTP/1.1\r\nHost: 127.0.0.1\r\ntoken: " QR_TOKEN
                      "\r\nConnection: close\r\n\r\n";
    send(fd, req, strlen(req), MSG_NOSIGNAL);
    char buf[65536];
    size_t got = 0;
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        if (got == 0) {
            size_t len = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
            memcpy(status, buf, len);
            status[len] = '\0';
            char *eol = strstr(status, "\r\n");
            if (eol) *eol = '\0';
        }
        got += (size_t)n;
    }
    close(fd);
    return (int)got;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void) {
    /* What a C program has unless it changes it; set it explicitly so the
     * test does not depend on what the shell passed down. */
    signal(SIGPIPE, SIG_DFL);
    char dir[] = "/tmp/floorbell-c-gone-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    floorbell_engine *fb = NULL;
    if (floorbell_engine_open(dir, CONFIG, &fb) != FLOORBELL_STATUS_OK || fb == NULL) {
        fprintf(stderr, "engine_open failed\n");
        return 1;
    }
    uint16_t port = 0;
    CHECK(floorbell_engine_serve(fb, "127.0.0.1:0", &port) == FLOORBELL_STATUS_OK && port != 0, "serve");

    /* A short answer: each pipelined copy goes out with its own writev. */
    char hash[11];
    CHECK(floorbell_engine_publish_event(fb, "{\"code\":\"waiter_call\",\"table\":5}", hash) == FLOORBELL_STATUS_OK,
          "publish");
    for (int i = 0; i < 20; i++) ask_and_vanish(port, 4);

    /* A long answer (~6 MB), streamed a chunk at a time by plain writes. */
    size_t big = 100 * 1000;
    char *event = malloc(big + 64);
    if (event == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    int head = snprintf(event, big + 64, "{\"code\":\"save_order\",\"invoice\":{\"note\":\"");
    memset(event + head, 'x', big);
    strcpy(event + head + big, "\"}}");
    for (int i = 0; i < 60; i++) {
        CHECK(floorbell_engine_publish_event(fb, event, hash) == FLOORBELL_STATUS_OK, "publish long %d", i);
    }
    free(event);
    for (int i = 0; i < 10; i++) ask_and_vanish(port, 2);

    /* Still here, still serving. */
    char status[128];
    int got = poll_status(port, status, sizeof status);
    CHECK(strcmp(status, "HTTP/1.1 200 OK") == 0 && got > 6 * 1000 * 1000, "after the vanished clients: %s, %d bytes",
          status, got);

    CHECK(floorbell_engine_close(fb) == FLOORBELL_STATUS_OK, "close");
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%s\n", failed == 0 ? "all passed" : "FAILED");
    return failed == 0 ? 0 : 1;
}
