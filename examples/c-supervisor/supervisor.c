/*
 * c-supervisor: a plain C99 host of the otalite agent (libotalite_capi.a).
 *
 * The supervisor owns everything the agent needs and does all I/O:
 *
 *   memory        static buffers, sized by the OTALITE_* constants
 *   network       POSIX sockets, plain HTTP; the library writes the request
 *                 heads and parses the responses (otalite_request_head,
 *                 otalite_download_head, otalite_response_*)
 *   device key    an ECDSA P-256 secret (32 random bytes in a file); the
 *                 library signs the authentication request (otalite_p256_*)
 *   board         files in a directory: two slot images (partitions 2 and
 *                 3), the boot environment (name=value lines), the state
 *                 record, the deployment log; the slot is written through
 *                 otalite_slot callbacks
 *   bootloader    simulated at every power-on: a pending trial boots once,
 *                 a trial that boots twice falls back
 *
 * One run takes the device through one managed deployment, across the
 * reboots it needs (each "power-on" starts a new agent from the persisted
 * record and the boot environment), and stops once the deployment was
 * reported. With --power-cut-after N the power goes out once the download
 * has fed N artifact bytes: the agent and every open file are dropped and
 * the device starts again from what its files hold.
 *
 *   c-supervisor --server http://HOST:PORT --dir DIR
 *                [--power-cut-after BYTES] [--identity TEXT]
 *
 * Exit status 0 when a deployment was finished (reported), 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include "otalite.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define DEVICE_TYPE "beaglebone"
#define FACTORY_ARTIFACT "release-1"
#define FACTORY_PROVIDES "rootfs-image.version=release-1\n"
#define SLOT_A 2u
#define SLOT_B 3u
#define SLOT_BYTES (1u << 20)
#define MAX_BOOTS 8
#define DEADLINE_MS 120000u
#define IO_TIMEOUT_S 10

/* ---------------------------------------------------------------------
 * Memory: all of it static.
 */
static otalite_agent agent;
static otalite_response response;
static uint8_t record_buf[OTALITE_RECORD_BUFFER_MIN];
static uint8_t request_buf[OTALITE_REQUEST_BUFFER_MIN];
static uint8_t auth_buf[OTALITE_AUTH_BUFFER_MIN];
static uint8_t output_buf[OTALITE_SMALL_BUFFER_SUGGESTED];
static uint8_t window_buf[OTALITE_WINDOW_BUFFER_MIN];
static uint8_t block_buf[OTALITE_BLOCK_BUFFER_SUGGESTED];
static uint8_t compare_buf[OTALITE_SMALL_BUFFER_SUGGESTED];
/* Request heads and received bytes. */
static uint8_t net_buf[OTALITE_REQUEST_HEAD_MAX];
/* Response bodies and decoded download bytes. */
static uint8_t body_buf[16384];
/* The stored record or deployment log, read back. */
static uint8_t file_buf[OTALITE_RECORD_BUFFER_MIN];
static uint8_t secret[OTALITE_P256_SECRET_SIZE];
static char public_key_pem[OTALITE_P256_PUBLIC_KEY_PEM_SIZE];

/* Options. */
static const char *data_dir;
static const char *server_url;
static const char *identity = "mac=02:00:00:00:c0:01\n";
static long long power_cut_after = -1;

static struct timespec started;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)(ts.tv_sec - started.tv_sec) * 1000u +
           (uint64_t)((ts.tv_nsec - started.tv_nsec) / 1000000);
}

static void say(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("c-supervisor: ", stdout);
    vprintf(format, args);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(args);
}

static void die(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("c-supervisor: error: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static void check(otalite_status status, const char *what) {
    if (status != OTALITE_OK) {
        die("%s: %s", what, otalite_status_text((int32_t)status));
    }
}

/* ---------------------------------------------------------------------
 * Files.
 */
static void path_of(char *out, size_t cap, const char *name) {
    if ((size_t)snprintf(out, cap, "%s/%s", data_dir, name) >= cap) {
        die("path too long: %s/%s", data_dir, name);
    }
}

/* Reads a whole file: 0, or -1 when it does not exist. */
static int read_file(const char *name, uint8_t *buf, size_t cap, size_t *len) {
    char path[512];
    FILE *file;
    path_of(path, sizeof path, name);
    file = fopen(path, "rb");
    if (!file) {
        if (errno == ENOENT) {
            return -1;
        }
        die("open %s: %s", path, strerror(errno));
    }
    *len = fread(buf, 1, cap, file);
    if (ferror(file) || (*len == cap && fgetc(file) != EOF)) {
        die("read %s: too large or unreadable", path);
    }
    fclose(file);
    return 0;
}

/* Replaces a file atomically: a power cut leaves the old or the new one. */
static int write_file_atomic(const char *name, const void *data, size_t len) {
    char path[512], temp[520];
    int fd, dir_fd;
    path_of(path, sizeof path, name);
    snprintf(temp, sizeof temp, "%s.tmp", path);
    fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return -1;
    }
    if (write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    if (rename(temp, path) != 0) {
        return -1;
    }
    dir_fd = open(data_dir, O_RDONLY);
    if (dir_fd >= 0) {
        fsync(dir_fd);
        close(dir_fd);
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * The boot environment: name=value lines, replaced atomically.
 */
#define ENV_VARS 16
struct env {
    int count;
    char name[ENV_VARS][32];
    char value[ENV_VARS][64];
};

static void env_load(struct env *env) {
    size_t len = 0;
    char text[2048], *line, *save = NULL;
    env->count = 0;
    if (read_file("bootenv", (uint8_t *)text, sizeof text - 1, &len) != 0) {
        return;
    }
    text[len] = '\0';
    for (line = strtok_r(text, "\n", &save); line && env->count < ENV_VARS;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq) {
            continue;
        }
        *eq = '\0';
        snprintf(env->name[env->count], sizeof env->name[0], "%s", line);
        snprintf(env->value[env->count], sizeof env->value[0], "%s", eq + 1);
        env->count++;
    }
}

static const char *env_get(const struct env *env, const char *name) {
    int i;
    for (i = 0; i < env->count; i++) {
        if (strcmp(env->name[i], name) == 0) {
            return env->value[i];
        }
    }
    return NULL;
}

static void env_put(struct env *env, const char *name, const char *value) {
    int i;
    for (i = 0; i < env->count; i++) {
        if (strcmp(env->name[i], name) == 0) {
            break;
        }
    }
    if (i == env->count) {
        if (env->count == ENV_VARS) {
            die("boot environment full");
        }
        env->count++;
    }
    snprintf(env->name[i], sizeof env->name[0], "%s", name);
    snprintf(env->value[i], sizeof env->value[0], "%s", value);
}

static int env_store(const struct env *env) {
    char text[2048];
    size_t len = 0;
    int i;
    for (i = 0; i < env->count; i++) {
        len += (size_t)snprintf(text + len, sizeof text - len, "%s=%s\n", env->name[i],
                                env->value[i]);
    }
    return write_file_atomic("bootenv", text, len);
}

/* Mender's variables: one env write per operation, all or nothing. */
static int env_set_part(uint32_t part, int trial) {
    struct env env;
    char decimal[16], hex[16];
    env_load(&env);
    snprintf(decimal, sizeof decimal, "%" PRIu32, part);
    snprintf(hex, sizeof hex, "%" PRIX32, part);
    env_put(&env, "mender_boot_part", decimal);
    env_put(&env, "mender_boot_part_hex", hex);
    env_put(&env, "upgrade_available", trial ? "1" : "0");
    if (trial) {
        env_put(&env, "bootcount", "0");
    }
    return env_store(&env);
}

static int env_commit(void) {
    struct env env;
    env_load(&env);
    env_put(&env, "upgrade_available", "0");
    return env_store(&env);
}

static otalite_boot_state boot_state(void) {
    struct env env;
    otalite_boot_state state;
    const char *value;
    memset(&state, 0, sizeof state);
    env_load(&env);
    if ((value = env_get(&env, "mender_boot_part")) != NULL) {
        state.has_boot_part = true;
        state.boot_part = (uint32_t)strtoul(value, NULL, 10);
    }
    value = env_get(&env, "upgrade_available");
    state.upgrade_available = value && strcmp(value, "1") == 0;
    if ((value = env_get(&env, "bootcount")) != NULL) {
        state.has_bootcount = true;
        state.bootcount = (uint32_t)strtoul(value, NULL, 10);
    }
    return state;
}

/* What U-Boot does at power-on (bootlimit=1). */
static uint32_t bootloader(void) {
    otalite_boot_state state = boot_state();
    struct env env;
    char count[16];
    if (!state.has_boot_part) {
        die("mender_boot_part is not set");
    }
    if (!state.upgrade_available) {
        return state.boot_part;
    }
    if (state.bootcount + 1 > 1) {
        uint32_t other = state.boot_part == SLOT_A ? SLOT_B : SLOT_A;
        printf("bootloader: the trial of partition %" PRIu32 " failed; falling back to %" PRIu32
               "\n",
               state.boot_part, other);
        if (env_set_part(other, 0) != 0) {
            die("bootloader: cannot write the environment");
        }
        return other;
    }
    env_load(&env);
    snprintf(count, sizeof count, "%" PRIu32, state.bootcount + 1);
    env_put(&env, "bootcount", count);
    if (env_store(&env) != 0) {
        die("bootloader: cannot write the environment");
    }
    printf("bootloader: trial boot of partition %" PRIu32 "\n", state.boot_part);
    return state.boot_part;
}

/* First power-on ever: blank slots, slot A, the factory record, a key. */
static void factory(void) {
    char path[512];
    uint32_t parts[2] = {SLOT_A, SLOT_B};
    size_t len = 0;
    int i;
    mkdir(data_dir, 0700);
    path_of(path, sizeof path, "bootenv");
    if (access(path, F_OK) == 0) {
        return;
    }
    for (i = 0; i < 2; i++) {
        char name[32];
        int fd;
        snprintf(name, sizeof name, "slot-%" PRIu32 ".img", parts[i]);
        path_of(path, sizeof path, name);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, SLOT_BYTES) != 0) {
            die("cannot create %s", path);
        }
        close(fd);
    }
    check(otalite_record_new(FACTORY_ARTIFACT, FACTORY_PROVIDES, record_buf, sizeof record_buf,
                             &len),
          "the factory record");
    if (write_file_atomic("state.rec", record_buf, len) != 0 || env_set_part(SLOT_A, 0) != 0) {
        die("cannot write the factory state");
    }
}

/* The device key: 32 random bytes, made once. */
static void load_key(void) {
    size_t len = 0;
    size_t pem_len = 0;
    if (read_file("device.key", secret, sizeof secret, &len) != 0 || len != sizeof secret) {
        FILE *random = fopen("/dev/urandom", "rb");
        if (!random) {
            die("no /dev/urandom");
        }
        do {
            if (fread(secret, 1, sizeof secret, random) != sizeof secret) {
                die("cannot read /dev/urandom");
            }
        } while (!otalite_p256_check_secret(secret));
        fclose(random);
        if (write_file_atomic("device.key", secret, sizeof secret) != 0) {
            die("cannot store the device key");
        }
    }
    check(otalite_p256_public_key_pem(secret, public_key_pem, sizeof public_key_pem, &pem_len),
          "the public key");
}

/* ---------------------------------------------------------------------
 * The slot, through the library's callbacks.
 */
struct slot_file {
    int fd;
};

static int32_t slot_read(void *ctx, uint8_t *buf, size_t len, size_t *read_count) {
    ssize_t got = read(((struct slot_file *)ctx)->fd, buf, len);
    if (got < 0) {
        return errno;
    }
    *read_count = (size_t)got;
    return 0;
}

static int32_t slot_write(void *ctx, const uint8_t *buf, size_t len, size_t *written) {
    ssize_t put = write(((struct slot_file *)ctx)->fd, buf, len);
    if (put < 0) {
        return errno;
    }
    *written = (size_t)put;
    return 0;
}

static int32_t slot_seek(void *ctx, int64_t offset, int32_t whence, uint64_t *position) {
    int how = whence == 0 ? SEEK_SET : whence == 1 ? SEEK_CUR : SEEK_END;
    off_t at = lseek(((struct slot_file *)ctx)->fd, (off_t)offset, how);
    if (at < 0) {
        return errno;
    }
    *position = (uint64_t)at;
    return 0;
}

static int32_t slot_capacity(void *ctx, uint64_t *capacity) {
    struct stat st;
    if (fstat(((struct slot_file *)ctx)->fd, &st) != 0) {
        return errno;
    }
    *capacity = (uint64_t)st.st_size;
    return 0;
}

static int32_t slot_sync(void *ctx) {
    return fdatasync(((struct slot_file *)ctx)->fd) == 0 ? 0 : errno;
}

static int32_t header_accepted(void *ctx, otalite_str name) {
    (void)ctx;
    say("artifact %.*s accepted", (int)name.len, name.ptr);
    return 0;
}

/* ---------------------------------------------------------------------
 * Network: one request per connection, framed by the library.
 */
static int connect_to(const otalite_url *url) {
    char host[256], port[8];
    struct addrinfo hints, *found, *each;
    struct timeval timeout;
    int fd = -1;
    if (url->https) {
        return -1; /* this supervisor speaks plain HTTP only */
    }
    if (url->host.len >= sizeof host) {
        return -1;
    }
    memcpy(host, url->host.ptr, url->host.len);
    host[url->host.len] = '\0';
    snprintf(port, sizeof port, "%u", (unsigned)url->port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &found) != 0) {
        return -1;
    }
    for (each = found; each; each = each->ai_next) {
        fd = socket(each->ai_family, each->ai_socktype, each->ai_protocol);
        if (fd < 0) {
            continue;
        }
        timeout.tv_sec = IO_TIMEOUT_S;
        timeout.tv_usec = 0;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        if (connect(fd, each->ai_addr, each->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    return fd;
}

static int send_all(int fd, const uint8_t *data, size_t len) {
    while (len > 0) {
        ssize_t sent = send(fd, data, len, 0);
        if (sent <= 0) {
            return -1;
        }
        data += sent;
        len -= (size_t)sent;
    }
    return 0;
}

/* Sends a device-API request and reads the whole answer into body_buf.
 * Returns NULL, or why it failed. */
static const char *exchange(const otalite_request *request, uint16_t *status, size_t *body_len) {
    otalite_url url;
    char signature[OTALITE_P256_SIGNATURE_SIZE];
    size_t signature_len = 0, head_len = 0;
    int fd;
    if (otalite_url_parse(request->server.ptr, request->server.len, &url) != OTALITE_OK) {
        return "the server URL is not http(s)://";
    }
    if (request->sign_body &&
        otalite_p256_sign(secret, request->body.ptr, request->body.len, signature,
                          sizeof signature, &signature_len) != OTALITE_OK) {
        return "cannot sign the request";
    }
    if (otalite_request_head(request, signature, signature_len, net_buf, sizeof net_buf,
                             &head_len) != OTALITE_OK) {
        return "cannot frame the request";
    }
    fd = connect_to(&url);
    if (fd < 0) {
        return "cannot connect to the server";
    }
    if (send_all(fd, net_buf, head_len) != 0 ||
        send_all(fd, request->body.ptr, request->body.len) != 0) {
        close(fd);
        return "cannot send the request";
    }
    otalite_response_init(&response);
    *body_len = 0;
    for (;;) {
        ssize_t received = recv(fd, net_buf, sizeof net_buf, 0);
        size_t at = 0;
        otalite_response_state state = OTALITE_RESPONSE_NEED_INPUT;
        if (received < 0) {
            close(fd);
            return "cannot read the response";
        }
        if (received == 0) {
            state = otalite_response_close(&response);
            close(fd);
            if (state != OTALITE_RESPONSE_DONE) {
                return "the response was cut short";
            }
            break;
        }
        while (at < (size_t)received) {
            size_t consumed = 0, produced = 0;
            state = otalite_response_feed(&response, net_buf + at, (size_t)received - at,
                                          &consumed, body_buf + *body_len,
                                          sizeof body_buf - *body_len, &produced);
            at += consumed;
            *body_len += produced;
            if (state == OTALITE_RESPONSE_DONE) {
                break;
            }
            if (state == OTALITE_RESPONSE_ERROR || state == OTALITE_RESPONSE_BODY_FULL) {
                close(fd);
                return "bad or oversized response";
            }
        }
        if (state == OTALITE_RESPONSE_DONE) {
            close(fd);
            break;
        }
    }
    *status = otalite_response_status(&response);
    return NULL;
}

/* ---------------------------------------------------------------------
 * The artifact stream: opened by OPEN_ARTIFACT, read by READ_ARTIFACT; it
 * stays open across the REQUESTs between them (the `downloading` report, a
 * re-authentication), so it has its own response reader and receive
 * buffer.
 */
static int stream_fd = -1;
static otalite_response stream_response;
/* Received bytes not yet fed to the reader: stream_buf[stream_at..stream_len]. */
static uint8_t stream_buf[16384];
static size_t stream_at, stream_len;
/* Artifact bytes fed so far (from byte 0 of the artifact). */
static uint64_t stream_fed;

static void stream_close(void) {
    if (stream_fd >= 0) {
        close(stream_fd);
        stream_fd = -1;
    }
}

/* Opens the artifact at uri/uri_len from byte from: sends the GET and reads
 * the answer's head (200, or 206 when resuming). NULL once open, else why
 * not. */
static const char *stream_open(const char *uri, size_t uri_len, uint64_t from) {
    otalite_url url;
    size_t head_len = 0;
    uint16_t expected = from > 0 ? 206 : 200;
    stream_close();
    if (otalite_url_parse(uri, uri_len, &url) != OTALITE_OK ||
        otalite_download_head(uri, uri_len, from, net_buf, sizeof net_buf, &head_len) !=
            OTALITE_OK) {
        return "the artifact location is not http(s)://";
    }
    stream_fd = connect_to(&url);
    if (stream_fd < 0) {
        return "cannot connect for the download";
    }
    if (send_all(stream_fd, net_buf, head_len) != 0) {
        stream_close();
        return "cannot send the download request";
    }
    otalite_response_init(&stream_response);
    stream_at = stream_len = 0;
    stream_fed = from;
    for (;;) {
        size_t consumed = 0;
        uint16_t status;
        ssize_t received = recv(stream_fd, stream_buf, sizeof stream_buf, 0);
        if (received <= 0) {
            stream_close();
            return "the server closed the download before its head";
        }
        /* No room for body bytes: the reader stops after the head. */
        if (otalite_response_feed(&stream_response, stream_buf, (size_t)received, &consumed, NULL,
                                  0, NULL) == OTALITE_RESPONSE_ERROR) {
            stream_close();
            return "bad download response";
        }
        status = otalite_response_status(&stream_response);
        if (status != 0) {
            if (status != expected) {
                stream_close();
                return "unexpected download status";
            }
            /* The body bytes that came with the head wait for the read. */
            stream_at = consumed;
            stream_len = (size_t)received;
            return NULL;
        }
    }
}

enum fetched { FETCH_TAKEN, FETCH_ENDED, FETCH_FAILED, FETCH_POWER_CUT };

/* Feeds the open stream into the agent until it has enough (TAKEN: no
 * completion follows), the stream ends (ENDED) or breaks (FAILED), or the
 * power goes out. */
static enum fetched stream_read(struct slot_file *file, const char **why) {
    otalite_slot slot;
    otalite_install_hooks hooks;
    memset(&slot, 0, sizeof slot);
    slot.ctx = file;
    slot.read = slot_read;
    slot.write = slot_write;
    slot.seek = slot_seek;
    slot.capacity = slot_capacity;
    slot.sync = slot_sync;
    memset(&hooks, 0, sizeof hooks);
    hooks.header_accepted = header_accepted;
    for (;;) {
        size_t consumed = 0, produced = 0, done = 0;
        otalite_response_state state;
        if (stream_at == stream_len) {
            ssize_t received = recv(stream_fd, stream_buf, sizeof stream_buf, 0);
            if (received < 0) {
                *why = "the download broke";
                return FETCH_FAILED;
            }
            if (received == 0) {
                if (otalite_response_close(&stream_response) == OTALITE_RESPONSE_DONE) {
                    return FETCH_ENDED;
                }
                *why = "the server closed the download";
                return FETCH_FAILED;
            }
            stream_at = 0;
            stream_len = (size_t)received;
        }
        state = otalite_response_feed(&stream_response, stream_buf + stream_at,
                                      stream_len - stream_at, &consumed, body_buf,
                                      sizeof body_buf, &produced);
        stream_at += consumed;
        if (state == OTALITE_RESPONSE_ERROR) {
            *why = "bad download response";
            return FETCH_FAILED;
        }
        while (done < produced) {
            size_t take = produced - done;
            otalite_feed feed;
            if (power_cut_after >= 0) {
                if (stream_fed >= (uint64_t)power_cut_after) {
                    say("POWER CUT after %" PRIu64 " artifact bytes", stream_fed);
                    return FETCH_POWER_CUT;
                }
                if (take > (uint64_t)power_cut_after - stream_fed) {
                    take = (size_t)((uint64_t)power_cut_after - stream_fed);
                }
            }
            feed = otalite_handle_artifact(&agent, now_ms(), body_buf + done, take, &slot, &hooks);
            if (feed != OTALITE_FEED_CONTINUE) {
                /* COMPLETE or STOP: the read is over, no completion. */
                return FETCH_TAKEN;
            }
            stream_fed += take;
            done += take;
        }
        if (state == OTALITE_RESPONSE_DONE) {
            /* The whole body was fed and the agent still wants more. */
            return FETCH_ENDED;
        }
    }
}

/* ---------------------------------------------------------------------
 * The supervisor loop.
 */
enum life { LIFE_REBOOT, LIFE_POWER_CUT, LIFE_FINISHED };

static void rfc3339_now(char *out, size_t cap) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *level_name(otalite_log_level level) {
    return level == OTALITE_LOG_ERROR ? "error" : level == OTALITE_LOG_WARNING ? "warning" : "info";
}

/* One power-on: a new agent from the persisted record and the boot env. */
static enum life power_on(uint32_t booted) {
    const char *servers[1];
    otalite_config config;
    otalite_buffers buffers;
    otalite_boot_state boot = boot_state();
    struct slot_file slot = {-1};
    size_t record_len = 0;
    int in_deployment;
    otalite_status status;
    char inventory[128];

    if (read_file("state.rec", file_buf, sizeof file_buf, &record_len) != 0) {
        die("no state record");
    }
    servers[0] = server_url;
    memset(&config, 0, sizeof config);
    config.mode = OTALITE_MODE_MANAGED;
    config.device_type = DEVICE_TYPE;
    config.servers = servers;
    config.server_count = 1;
    config.tenant_token = "";
    config.public_key_pem = public_key_pem;
    config.client_version = "c-supervisor/0.1.0";
    config.timing.update_poll_ms = 1000;
    config.timing.inventory_poll_ms = 60000;
    config.timing.retry_poll_ms = 500;
    config.timing.retry_poll_count = 0;
    config.timing.backoff_unit_ms = 100;
    config.timing.reboot_wait_ms = 30000;
    buffers.record = record_buf;
    buffers.record_len = sizeof record_buf;
    buffers.request = request_buf;
    buffers.request_len = sizeof request_buf;
    buffers.auth = auth_buf;
    buffers.auth_len = sizeof auth_buf;
    buffers.output = output_buf;
    buffers.output_len = sizeof output_buf;
    buffers.window = window_buf;
    buffers.window_len = sizeof window_buf;
    buffers.block = block_buf;
    buffers.block_len = sizeof block_buf;
    buffers.compare = compare_buf;
    buffers.compare_len = sizeof compare_buf;
    status = otalite_agent_init(&agent, &config, &buffers, file_buf, record_len, &boot);
    check(status, "otalite_agent_init");
    in_deployment = otalite_agent_step(&agent) != OTALITE_STEP_IDLE;
    snprintf(inventory, sizeof inventory, "board=c-file-backed\nslot=%" PRIu32 "\n", booted);

    for (;;) {
        otalite_action action;
        uint64_t at = 0;
        while (otalite_poll(&agent, &action)) {
            uint64_t now = now_ms();
            const char *why = NULL;
            /* The stream lives across the `downloading` report (with a
             * re-authentication: identity, auth request) and deployment-log
             * lines only. */
            if (action.kind != OTALITE_ACTION_READ_ARTIFACT &&
                action.kind != OTALITE_ACTION_REQUEST &&
                action.kind != OTALITE_ACTION_GATHER_IDENTITY &&
                action.kind != OTALITE_ACTION_DEPLOYMENT_LOG &&
                action.kind != OTALITE_ACTION_CLEAR_DEPLOYMENT_LOG) {
                stream_close();
            }
            switch (action.kind) {
            case OTALITE_ACTION_PERSIST:
                if (write_file_atomic("state.rec", action.record.ptr, action.record.len) != 0) {
                    why = "cannot write the state record";
                }
                otalite_handle_done(&agent, now, action.id,
                                    why ? OTALITE_OUTCOME_FAILED : OTALITE_OUTCOME_DONE, why,
                                    why ? strlen(why) : 0);
                break;
            case OTALITE_ACTION_PERSIST_CONTROL_MAPS:
                if (write_file_atomic("control-maps.rec", action.record.ptr, action.record.len) != 0) {
                    why = "cannot write the update control maps";
                }
                otalite_handle_done(&agent, now, action.id,
                                    why ? OTALITE_OUTCOME_FAILED : OTALITE_OUTCOME_DONE, why,
                                    why ? strlen(why) : 0);
                break;
            case OTALITE_ACTION_RUN_SCRIPTS:
                /* This board runs no state scripts. */
                otalite_handle_done(&agent, now, action.id, OTALITE_OUTCOME_DONE, NULL, 0);
                break;
            case OTALITE_ACTION_PREPARE_SLOTS: {
                otalite_slots slots;
                slots.active = booted;
                slots.inactive = booted == SLOT_A ? SLOT_B : SLOT_A;
                slots.proven_by_root_device = true; /* the bootloader told us */
                if (action.install) {
                    char name[32], path[512];
                    snprintf(name, sizeof name, "slot-%" PRIu32 ".img", slots.inactive);
                    path_of(path, sizeof path, name);
                    if (slot.fd >= 0) {
                        close(slot.fd);
                    }
                    slot.fd = open(path, O_RDWR);
                    if (slot.fd < 0) {
                        why = "cannot open the inactive slot";
                        otalite_handle_slots(&agent, now, action.id, NULL, why, strlen(why));
                        break;
                    }
                }
                otalite_handle_slots(&agent, now, action.id, &slots, NULL, 0);
                break;
            }
            case OTALITE_ACTION_OPEN_ARTIFACT:
                /* action.uri is used before the next agent call: no copy. */
                say("opening the artifact at byte %" PRIu64, action.from);
                why = stream_open(action.uri.ptr, action.uri.len, action.from);
                otalite_handle_done(&agent, now_ms(), action.id,
                                    why ? OTALITE_OUTCOME_TRANSIENT : OTALITE_OUTCOME_DONE, why,
                                    why ? strlen(why) : 0);
                break;
            case OTALITE_ACTION_READ_ARTIFACT: {
                /* The agent keeps the location while the download runs. */
                otalite_str uri = otalite_agent_artifact_uri(&agent);
                enum fetched fetched;
                uint32_t id = action.id;
                if (stream_fd < 0 || slot.fd < 0) {
                    why = "no open stream or slot";
                    otalite_handle_done(&agent, now, id, OTALITE_OUTCOME_FAILED, why, strlen(why));
                    break;
                }
                say("streaming %.*s from byte %" PRIu64, (int)uri.len, uri.ptr, stream_fed);
                fetched = stream_read(&slot, &why);
                /* Read to its end either way (after a break the agent opens
                 * it again where it stopped). */
                stream_close();
                if (fetched == FETCH_POWER_CUT) {
                    close(slot.fd);
                    otalite_agent_deinit(&agent);
                    return LIFE_POWER_CUT;
                }
                if (fetched == FETCH_ENDED) {
                    otalite_handle_done(&agent, now_ms(), id, OTALITE_OUTCOME_DONE, NULL, 0);
                } else if (fetched == FETCH_FAILED) {
                    otalite_handle_done(&agent, now_ms(), id, OTALITE_OUTCOME_TRANSIENT, why,
                                        strlen(why));
                }
                break;
            }
            case OTALITE_ACTION_SET_TRIAL:
            case OTALITE_ACTION_ROLL_BACK:
                if (env_set_part(action.part, action.kind == OTALITE_ACTION_SET_TRIAL) != 0) {
                    why = "cannot write the boot environment";
                }
                otalite_handle_done(&agent, now, action.id,
                                    why ? OTALITE_OUTCOME_FAILED : OTALITE_OUTCOME_DONE, why,
                                    why ? strlen(why) : 0);
                break;
            case OTALITE_ACTION_COMMIT_BOOT:
                if (env_commit() != 0) {
                    why = "cannot write the boot environment";
                }
                otalite_handle_done(&agent, now, action.id,
                                    why ? OTALITE_OUTCOME_FAILED : OTALITE_OUTCOME_DONE, why,
                                    why ? strlen(why) : 0);
                break;
            case OTALITE_ACTION_REBOOT:
                say("rebooting");
                if (slot.fd >= 0) {
                    close(slot.fd);
                }
                otalite_agent_deinit(&agent);
                return LIFE_REBOOT;
            case OTALITE_ACTION_GATHER_IDENTITY:
                otalite_handle_data(&agent, now, action.id, (const uint8_t *)identity,
                                    strlen(identity));
                break;
            case OTALITE_ACTION_GATHER_INVENTORY:
                otalite_handle_data(&agent, now, action.id, (const uint8_t *)inventory,
                                    strlen(inventory));
                break;
            case OTALITE_ACTION_REQUEST: {
                uint16_t http_status = 0;
                size_t body_len = 0;
                uint32_t id = action.id;
                why = exchange(&action.request, &http_status, &body_len);
                if (why) {
                    otalite_handle_done(&agent, now_ms(), id, OTALITE_OUTCOME_TRANSIENT, why,
                                        strlen(why));
                } else {
                    otalite_handle_response(&agent, now_ms(), id, http_status, body_buf,
                                            body_len);
                }
                break;
            }
            case OTALITE_ACTION_DEPLOYMENT_LOG: {
                char path[512], stamp[32];
                FILE *log;
                path_of(path, sizeof path, "deployment.log");
                rfc3339_now(stamp, sizeof stamp);
                log = fopen(path, "a");
                if (log) {
                    fprintf(log, "%s %s %.*s\n", stamp, level_name(action.level),
                            (int)action.message.len, action.message.ptr);
                    fclose(log);
                }
                break;
            }
            case OTALITE_ACTION_CLEAR_DEPLOYMENT_LOG:
                write_file_atomic("deployment.log", "", 0);
                break;
            case OTALITE_ACTION_READ_DEPLOYMENT_LOG: {
                size_t len = 0;
                if (read_file("deployment.log", file_buf, sizeof file_buf, &len) != 0) {
                    len = 0;
                }
                otalite_handle_data(&agent, now, action.id, file_buf, len);
                break;
            }
            case OTALITE_ACTION_COMPLETED:
                die("a standalone completion in managed mode");
                break;
            case OTALITE_ACTION_EXIT:
                if (action.failed) {
                    die("the agent failed: %.*s", (int)action.message.len, action.message.ptr);
                }
                {
                    otalite_str installed = otalite_agent_installed(&agent);
                    say("partition %" PRIu32 " runs %.*s", booted, (int)installed.len,
                        installed.ptr);
                }
                if (slot.fd >= 0) {
                    close(slot.fd);
                }
                otalite_agent_deinit(&agent);
                return LIFE_FINISHED;
            case OTALITE_ACTION_MODULE_CALL: {
                /* This board installs rootfs payloads only. */
                static const char no_modules[] = "this board has no update modules";
                otalite_handle_module(&agent, now, action.id, false, no_modules,
                                      sizeof no_modules - 1);
                break;
            }
            case OTALITE_ACTION_NONE:
                break;
            }
            /* The deployment is over once the record is idle again. */
            if (otalite_agent_step(&agent) != OTALITE_STEP_IDLE) {
                in_deployment = 1;
            } else if (in_deployment) {
                say("the deployment is over; stopping");
                in_deployment = 0;
                check(otalite_handle_command(&agent, now_ms(), OTALITE_COMMAND_STOP, NULL, 0),
                      "stop");
            }
        }
        if (!otalite_poll_at(&agent, &at)) {
            die("the agent waits for nothing (internal error)");
        }
        if (now_ms() > DEADLINE_MS) {
            die("no deployment finished in time");
        }
        {
            uint64_t now = now_ms();
            uint64_t wait = at > now ? at - now : 0;
            struct timespec pause;
            if (wait > 1000) {
                wait = 1000;
            }
            pause.tv_sec = (time_t)(wait / 1000);
            pause.tv_nsec = (long)(wait % 1000) * 1000000L;
            nanosleep(&pause, NULL);
        }
        otalite_handle_timeout(&agent, now_ms());
    }
}

int main(int argc, char **argv) {
    int i, boots;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            server_url = argv[++i];
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            data_dir = argv[++i];
        } else if (strcmp(argv[i], "--power-cut-after") == 0 && i + 1 < argc) {
            power_cut_after = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--identity") == 0 && i + 1 < argc) {
            identity = argv[++i];
        } else {
            fprintf(stderr, "usage: %s --server http://HOST:PORT --dir DIR "
                            "[--power-cut-after BYTES] [--identity TEXT]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!server_url || !data_dir) {
        fprintf(stderr, "%s: --server and --dir are required\n", argv[0]);
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &started);
    factory();
    load_key();
    for (boots = 1; boots <= MAX_BOOTS; boots++) {
        uint32_t booted = bootloader();
        say("power-on %d, running partition %" PRIu32, boots, booted);
        switch (power_on(booted)) {
        case LIFE_REBOOT:
            break;
        case LIFE_POWER_CUT:
            power_cut_after = -1;
            break;
        case LIFE_FINISHED:
            say("done after %d power-on(s)", boots);
            return 0;
        }
    }
    die("still not done after %d power-ons", MAX_BOOTS);
    return 1;
}
