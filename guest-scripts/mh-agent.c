/*
 * mh-agent: memharness guest command channel.
 *
 * Runs as PID 1 (exec'd by /init).  For each virtio-serial port name given on
 * the command line it forks a server that speaks a tiny framed protocol with
 * the host.  virtio-serial ports (not virtconsole/hvc) are used because they
 * are plain character devices: binary-clean, no tty line discipline, and the
 * kernel log never interleaves with command output.
 *
 * Frames (header is one text line, payload follows raw):
 *   guest -> host  "READY <proto> <port>\n"          once per server start
 *                  "O <id> <len>\n<bytes>"           stdout chunk
 *                  "E <id> <len>\n<bytes>"           stderr chunk
 *                  "X <id> <exit> <signal>\n"         command/file op finished
 *   host -> guest  "R <id> <len>\n<script>"          run /bin/sh -c script
 *                  "K <id> <signal>\n"                signal the running command's group
 *                  "W <id> <mode> <plen> <dlen>\n<path><data>"  write a file
 *                  "G <id> <plen>\n<path>"            read a file (O chunks, then X errno)
 * PID 1 also reaps every orphan, so background jobs never pile up as zombies.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROTO_VERSION 1
#define MAX_PORTS 8
#define CHUNK 65536

extern char **environ;

static int sigchld_pipe[2] = {-1, -1};

static void kmsg(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, buf, strlen(buf)) < 0) {
		/* nothing sensible to do: the log itself is unavailable */
	}
	close(fd);
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				struct pollfd pfd = {.fd = fd, .events = POLLOUT};
				poll(&pfd, 1, 100);
				continue;
			}
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = {.fd = fd, .events = POLLIN};
				poll(&pfd, 1, 1000);
				continue;
			}
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one header line (without the newline). Returns length or -1 on EOF. */
static int read_line(int fd, char *buf, size_t size)
{
	size_t i = 0;

	while (i + 1 < size) {
		char c;
		if (read_full(fd, &c, 1) < 0)
			return -1;
		if (c == '\n')
			break;
		buf[i++] = c;
	}
	buf[i] = 0;
	return (int)i;
}

static int send_frame(int port, char kind, unsigned long id, const char *data, size_t len)
{
	char hdr[64];
	int n = snprintf(hdr, sizeof(hdr), "%c %lu %zu\n", kind, id, len);

	if (write_all(port, hdr, (size_t)n) < 0)
		return -1;
	return len ? write_all(port, data, len) : 0;
}

static int send_exit(int port, unsigned long id, int code, int sig)
{
	char hdr[64];
	int n = snprintf(hdr, sizeof(hdr), "X %lu %d %d\n", id, code, sig);

	return write_all(port, hdr, (size_t)n);
}

static void on_sigchld(int sig)
{
	int saved = errno;
	char c = (char)sig;

	if (write(sigchld_pipe[1], &c, 1) < 0) {
		/* pipe full: a wakeup is already pending */
	}
	errno = saved;
}

/* Forwards what is readable on fd as frames of the given kind; returns 0 at EOF. */
static int forward(int port, int fd, char kind, unsigned long id)
{
	static char buf[CHUNK];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n > 0) {
		send_frame(port, kind, id, buf, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 1;
	return 0;
}

static void drain(int port, int fd, char kind, unsigned long id)
{
	if (fd < 0)
		return;
	while (forward(port, fd, kind, id) > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 0) <= 0)
			break;
	}
}

/*
 * One persistent /bin/sh per port; each command runs in a subshell of it.  A subshell is a
 * fork of an already-running busybox (no exec), about 3x cheaper under TCG than spawning a
 * new shell, which is what keeps a guest command under 10 ms.  Each command's exit status
 * comes back on a separate pipe (fd 3), so output and status can never be confused.
 */
struct shell {
	pid_t pid;
	int in, out, err, status;
};

static int start_shell(struct shell *sh)
{
	int in[2], out[2], err[2], st[2];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t dflt;
	char *const args[] = {"sh", NULL};

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    pipe2(st, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawn_file_actions_adddup2(&fa, st[1], 3);
	posix_spawnattr_init(&attr);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGCHLD);
	sigaddset(&dflt, SIGPIPE);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF);
	int rc = posix_spawn(&sh->pid, "/bin/sh", &fa, &attr, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(st[1]);
	if (rc != 0)
		return -1;
	sh->in = in[1];
	sh->out = out[0];
	sh->err = err[0];
	sh->status = st[0];
	fcntl(sh->out, F_SETFL, O_NONBLOCK);
	fcntl(sh->err, F_SETFL, O_NONBLOCK);
	fcntl(sh->status, F_SETFL, O_NONBLOCK);
	return 0;
}

static void stop_shell(struct shell *sh)
{
	if (sh->pid > 0) {
		kill(-sh->pid, SIGKILL);
		waitpid(sh->pid, NULL, 0);
	}
	close(sh->in);
	close(sh->out);
	close(sh->err);
	close(sh->status);
	sh->pid = -1;
}

static struct shell shell = {.pid = -1};

static void run_command(int port, unsigned long id, const char *name, char *script, size_t len)
{
	char path[128], line[256], status[32];
	size_t slen = 0;
	int code = -1, sig = 0, fd;

	if (shell.pid <= 0 && start_shell(&shell) < 0) {
		send_exit(port, id, 127, 0);
		return;
	}
	snprintf(path, sizeof(path), "/run/mh-cmd.%s", name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, script, len) < 0) {
		if (fd >= 0)
			close(fd);
		send_exit(port, id, 127, 0);
		return;
	}
	close(fd);
	int n = snprintf(line, sizeof(line), "( . %s ) </dev/null 3>&-; echo $? >&3\n", path);
	if (write_all(shell.in, line, (size_t)n) < 0)
		code = -2;

	while (code == -1) {
		struct pollfd pfd[5] = {
			{.fd = shell.out, .events = POLLIN},
			{.fd = shell.err, .events = POLLIN},
			{.fd = shell.status, .events = POLLIN},
			{.fd = port, .events = POLLIN},
			{.fd = sigchld_pipe[0], .events = POLLIN},
		};
		if (poll(pfd, 5, 1000) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			forward(port, shell.out, 'O', id);
		if (pfd[1].revents)
			forward(port, shell.err, 'E', id);
		if (pfd[2].revents) {
			ssize_t r = read(shell.status, status + slen, sizeof(status) - 1 - slen);
			if (r > 0) {
				slen += (size_t)r;
				status[slen] = 0;
				if (strchr(status, '\n'))
					code = atoi(status);
			}
		}
		if (pfd[3].revents & POLLIN) {
			/* Only a kill request is valid while a command runs: it takes the shell too. */
			char req[128];
			unsigned long kid;
			int ksig;
			if (read_line(port, req, sizeof(req)) >= 0 &&
			    sscanf(req, "K %lu %d", &kid, &ksig) == 2 && kid == id) {
				kill(-shell.pid, ksig);
				sig = ksig;
			}
		}
		if (pfd[4].revents) {
			char c[64];
			if (read(sigchld_pipe[0], c, sizeof(c)) < 0) {
				/* spurious wakeup */
			}
		}
		int st;
		if (waitpid(shell.pid, &st, WNOHANG) == shell.pid) {
			/* The shell itself died (killed, or the command killed it). */
			shell.pid = -1;
			if (code == -1) {
				sig = WIFSIGNALED(st) ? WTERMSIG(st) : sig;
				code = sig ? 128 + sig : WEXITSTATUS(st);
			}
		}
	}
	drain(port, shell.out, 'O', id);
	drain(port, shell.err, 'E', id);
	if (shell.pid <= 0 || code == -2) {
		stop_shell(&shell);
		if (code < 0)
			code = 127;
	}
	if (!sig && code > 128 && code < 128 + 65)
		sig = code - 128;
	send_exit(port, id, code, sig);
}

static void write_file(int port, unsigned long id, unsigned mode, size_t plen, size_t dlen)
{
	char *path = calloc(1, plen + 1);
	char *data = malloc(dlen ? dlen : 1);
	int rc = 0, fd;

	if (!path || !data || read_full(port, path, plen) < 0 || read_full(port, data, dlen) < 0) {
		send_exit(port, id, EIO, 0);
		goto out;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0 || write_all(fd, data, dlen) < 0)
		rc = errno;
	if (fd >= 0) {
		fchmod(fd, mode);
		close(fd);
	}
	send_exit(port, id, rc, 0);
out:
	free(path);
	free(data);
}

static void read_file(int port, unsigned long id, size_t plen)
{
	char *path = calloc(1, plen + 1);
	int fd;

	if (!path || read_full(port, path, plen) < 0) {
		send_exit(port, id, EIO, 0);
		free(path);
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		send_exit(port, id, errno, 0);
	} else {
		static char buf[CHUNK];
		ssize_t n;
		int rc = 0;
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			send_frame(port, 'O', id, buf, (size_t)n);
		if (n < 0)
			rc = errno;
		close(fd);
		send_exit(port, id, rc, 0);
	}
	free(path);
}

static void serve(const char *dev, const char *name)
{
	int port = open(dev, O_RDWR | O_CLOEXEC);
	char line[256];

	if (port < 0) {
		kmsg("mh-agent: cannot open %s: %s\n", dev, strerror(errno));
		_exit(1);
	}
	if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		_exit(1);
	signal(SIGCHLD, on_sigchld);
	signal(SIGPIPE, SIG_IGN);

	snprintf(line, sizeof(line), "READY %d %s\n", PROTO_VERSION, name);
	write_all(port, line, strlen(line));

	for (;;) {
		unsigned long id;
		size_t len, plen;
		unsigned mode;
		int sig;

		if (read_line(port, line, sizeof(line)) < 0) {
			/* host end closed: wait for it to reconnect */
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (sscanf(line, "R %lu %zu", &id, &len) == 2) {
			char *script = malloc(len + 1);
			if (!script || read_full(port, script, len) < 0) {
				free(script);
				continue;
			}
			script[len] = 0;
			run_command(port, id, name, script, len);
			free(script);
		} else if (sscanf(line, "W %lu %o %zu %zu", &id, &mode, &plen, &len) == 4) {
			write_file(port, id, mode, plen, len);
		} else if (sscanf(line, "G %lu %zu", &id, &plen) == 2) {
			read_file(port, id, plen);
		} else if (sscanf(line, "K %lu %d", &id, &sig) == 2) {
			/* the command already finished: nothing to signal */
		} else if (line[0]) {
			kmsg("mh-agent: bad frame header '%.64s'\n", line);
		}
	}
}

/* Finds /dev/vportNpM whose sysfs name matches; virtio probing may lag /init. */
static int find_port(const char *name, char *dev, size_t size)
{
	for (int tries = 0; tries < 1000; tries++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char path[300], buf[128] = {0};
			int fd;
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
			fd = open(path, O_RDONLY);
			if (fd < 0)
				continue;
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			while (n > 0 && (buf[n - 1] == '\n'))
				buf[--n] = 0;
			if (n > 0 && strcmp(buf, name) == 0) {
				snprintf(dev, size, "/dev/%s", e->d_name);
				if (access(dev, R_OK | W_OK) == 0) {
					closedir(d);
					return 0;
				}
			}
		}
		if (d)
			closedir(d);
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return -1;
}

static pid_t start_server(const char *name)
{
	char dev[300];
	pid_t pid;

	if (find_port(name, dev, sizeof(dev)) < 0) {
		kmsg("mh-agent: virtio port %s not found\n", name);
		return -1;
	}
	pid = fork();
	if (pid == 0)
		serve(dev, name);
	return pid;
}

int main(int argc, char **argv)
{
	pid_t servers[MAX_PORTS] = {0};
	int nports = argc - 1 > MAX_PORTS ? MAX_PORTS : argc - 1;

	if (nports < 1) {
		fprintf(stderr, "usage: mh-agent PORT-NAME...\n");
		return 2;
	}
	for (int i = 0; i < nports; i++)
		servers[i] = start_server(argv[i + 1]);

	/* PID 1 duty: reap everything, restart a server that died. */
	for (;;) {
		int status;
		pid_t pid = wait(&status);
		if (pid < 0) {
			if (errno == ECHILD)
				pause();
			continue;
		}
		for (int i = 0; i < nports; i++) {
			if (servers[i] == pid) {
				kmsg("mh-agent: server for %s exited (status %d), restarting\n",
				     argv[i + 1], status);
				servers[i] = start_server(argv[i + 1]);
			}
		}
	}
}
