/*
 * mh-gup: pinned pages under fork, mremap, THP split and migration (seed 003), and pins of
 * ZONE_DEVICE pages held while something else runs (seeds 000 and 004).
 *
 *   mh-gup anon [MIB]                   the seed-003 checks on anonymous (THP) memory,
 *                                       move_pages to the last NUMA node when there are two
 *   mh-gup hold anon|file|devdax PATH [--direct SERIAL] -- CMD [ARG...]
 *                                       pin pages of a mapping, run CMD while the pins are
 *                                       held and a child keeps touching the mapping, then
 *                                       check what the pins see against what the mapping shows;
 *                                       --direct: the FOLL_GET pin is an O_DIRECT read from
 *                                       the disk with that serial (the layout's slow_disk),
 *                                       in flight into the mapping while CMD runs, instead
 *                                       of a page in a pipe
 *
 * Two kinds of pin, both without libraries: FOLL_PIN|FOLL_LONGTERM through io_uring fixed
 * buffers (IORING_REGISTER_BUFFERS), read and written back with READ_FIXED/WRITE_FIXED, and
 * FOLL_GET through vmsplice() into a pipe that is read only at the end.  The invariant is the
 * seed's: a pinned page never silently stops being the page the mapping shows.  Each check
 * prints as {"name", "ok", "detail"}; the exit status is 1 when any check failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
#ifndef MPOL_MF_MOVE
#define MPOL_MF_MOVE (1 << 1)
#endif
#define KPF_THP 22
#define MIB (1UL << 20)
#define THP_SIZE (2 * MIB)
#define PAGE 4096UL

static int failures;
static int first_check = 1;

static void check(const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A check as one JSON object of the "checks" array; the detail is plain ASCII by design. */
static void check(const char *name, int ok, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	for (char *c = detail; *c; c++)
		if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
			*c = ' ';
	printf("%s{\"name\": \"%s\", \"ok\": %s, \"detail\": \"%s\"}", first_check ? "" : ", ", name,
	       ok ? "true" : "false", detail);
	first_check = 0;
	fflush(stdout);
	if (!ok)
		failures++;
}

/* ---- patterns: every 8-byte word names its seed and offset ---------------------------- */
static void fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t *w = buf;
	for (size_t i = 0; i < len / 8; i++)
		w[i] = (seed << 40) ^ (i * 8);
}

/* The first offset that does not hold ``seed``'s pattern, or -1. */
static long mismatch(const void *buf, size_t len, uint64_t seed)
{
	const uint64_t *w = buf;
	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != ((seed << 40) ^ (i * 8)))
			return (long)(i * 8);
	return -1;
}

static int all_zero(const void *buf, size_t len)
{
	const uint64_t *w = buf;
	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

/* ---- pfns and memory blocks ---------------------------------------------------------- */
static uint64_t pfn_of(const void *addr)
{
	uint64_t entry = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return 0;
	if (pread(fd, &entry, 8, (off_t)((uintptr_t)addr / PAGE * 8)) != 8)
		entry = 0;
	close(fd);
	return (entry >> 63) ? (entry & ((1ULL << 55) - 1)) : 0;
}

static uint64_t kpageflags(uint64_t pfn)
{
	uint64_t flags = 0;
	int fd = open("/proc/kpageflags", O_RDONLY);
	if (fd >= 0) {
		if (pread(fd, &flags, 8, (off_t)(pfn * 8)) != 8)
			flags = 0;
		close(fd);
	}
	return flags;
}

static uint64_t block_pages(void)
{
	char buf[64] = "";
	int fd = open("/sys/devices/system/memory/block_size_bytes", O_RDONLY);
	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) < 0)
			buf[0] = 0;
		close(fd);
	}
	uint64_t bytes = strtoull(buf, NULL, 16);
	return bytes ? bytes / PAGE : 32768;
}

static void block_path(uint64_t pfn, const char *file, char *out, size_t size)
{
	snprintf(out, size, "/sys/devices/system/memory/memory%" PRIu64 "/%s", pfn / block_pages(),
		 file);
}

/* Whether ``pfn`` lies in an online memory block of ZONE_MOVABLE. */
static int movable(uint64_t pfn)
{
	char path[128], buf[128] = "";
	if (!pfn)
		return 0;
	block_path(pfn, "valid_zones", path, sizeof(path));
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && strncmp(buf, "Movable", 7) == 0;
}

static int count_movable(const char *buf, size_t len)
{
	int n = 0;
	for (size_t off = 0; off < len; off += PAGE)
		n += movable(pfn_of(buf + off));
	return n;
}

/* ---- io_uring, the smallest part of it: one ring, one fixed buffer, one op at a time ---- */
struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int ring_setup(struct ring *r)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	r->fd = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (r->fd < 0)
		return -1;
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_SQ_RING);
	char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
			IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
		return -1;
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return 0;
}

/* FOLL_PIN | FOLL_LONGTERM on [buf, buf + len): 0 or -errno. */
static int ring_pin(struct ring *r, void *buf, size_t len)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	return syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0 ? -errno
											    : 0;
}

static void ring_unpin(struct ring *r)
{
	syscall(__NR_io_uring_register, r->fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
}

/* One READ_FIXED or WRITE_FIXED of the registered buffer against fd at offset 0. */
static int ring_io(struct ring *r, int op, int fd, void *buf, size_t len)
{
	unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask;
	struct io_uring_sqe *sqe = &r->sqes[idx];
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = (unsigned char)op;
	sqe->fd = fd;
	sqe->addr = (uint64_t)(uintptr_t)buf;
	sqe->len = (unsigned)len;
	sqe->buf_index = 0;
	r->sq_array[idx] = idx;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return -errno;
	unsigned head = *r->cq_head;
	if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	int res = r->cqes[head & *r->cq_mask].res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

/* What the longterm pin sees: the pinned pages written out through WRITE_FIXED. */
static int pin_view(struct ring *r, void *pinned, size_t len, void *out)
{
	int fd = memfd_create("mh-gup-view", 0);
	if (fd < 0)
		return -errno;
	int res = ring_io(r, IORING_OP_WRITE_FIXED, fd, pinned, len);
	if (res == (int)len && pread(fd, out, len, 0) != (ssize_t)len)
		res = -EIO;
	close(fd);
	return res == (int)len ? 0 : (res < 0 ? res : -EIO);
}

/* Writes ``seed``'s pattern into the pinned pages through READ_FIXED (the device's side). */
static int pin_store(struct ring *r, void *pinned, size_t len, uint64_t seed)
{
	void *tmp = malloc(len);
	int fd = memfd_create("mh-gup-store", 0), res = -ENOMEM;
	if (tmp && fd >= 0) {
		fill(tmp, len, seed);
		res = pwrite(fd, tmp, len, 0) == (ssize_t)len
			      ? ring_io(r, IORING_OP_READ_FIXED, fd, pinned, len)
			      : -errno;
	}
	if (fd >= 0)
		close(fd);
	free(tmp);
	return res == (int)len ? 0 : (res < 0 ? res : -EIO);
}

static const char *err_name(int err)
{
	switch (err) {
	case 0: return "ok";
	case EBUSY: return "EBUSY";
	case EIO: return "EIO";
	case EINTR: return "EINTR";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EINVAL: return "EINVAL";
	case EFAULT: return "EFAULT";
	case ENOSYS: return "ENOSYS";
	case EPERM: return "EPERM";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENXIO: return "ENXIO";
	case EHWPOISON: return "EHWPOISON";
	default: return strerror(err);
	}
}

/* The pin and the mapping agree: the mapping gets a new pattern, the pin must see it.  The
 * pin is addressed by the range it was registered with (``pinned``), which need not be where
 * the pages are mapped now (after an mremap). */
static void coherent(const char *name, struct ring *r, void *map, void *pinned, size_t len,
		     uint64_t seed)
{
	void *view = malloc(len);
	fill(map, len, seed);
	int res = view ? pin_view(r, pinned, len, view) : -ENOMEM;
	long bad = res ? 0 : mismatch(view, len, seed);
	if (res)
		check(name, 0, "reading the pin: %s", err_name(-res));
	else if (bad >= 0)
		check(name, 0, "the pin sees stale data at offset %ld: it no longer holds the mapped "
		      "page", bad);
	else
		check(name, 1, "the pin sees the mapping's writes");
	free(view);
}

/* ---- the seed-003 sequence ----------------------------------------------------------- */
static void on_alarm(int sig) { (void)sig; }

/* Writes ``state`` to the memory block holding ``pfn``, giving up after ``seconds``: 0 or
 * -errno (EINTR: still migrating when the alarm came; the kernel backs off on a signal). */
static int block_state(uint64_t pfn, const char *state, unsigned seconds)
{
	char path[128];
	struct sigaction sa = {.sa_handler = on_alarm};
	block_path(pfn, "state", path, sizeof(path));
	sigaction(SIGALRM, &sa, NULL); /* no SA_RESTART: the write returns EINTR */
	int fd = open(path, O_WRONLY), res = 0;
	if (fd < 0)
		return -errno;
	alarm(seconds);
	if (write(fd, state, strlen(state)) < 0)
		res = -errno;
	alarm(0);
	close(fd);
	return res;
}

static int split_all_thps(void)
{
	int fd = open("/sys/kernel/debug/split_huge_pages", O_WRONLY);
	if (fd < 0)
		return -errno;
	int res = write(fd, "1", 1) < 0 ? -errno : 0;
	close(fd);
	return res;
}

static int count_thps(const char *buf, size_t len)
{
	int n = 0;
	for (size_t off = 0; off < len; off += THP_SIZE)
		n += (kpageflags(pfn_of(buf + off)) >> KPF_THP) & 1;
	return n;
}

/* Children report through their exit status: one bit per failed expectation. */
static int child_status(pid_t pid)
{
	int status = 0;
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Nodes with memory (/sys/devices/system/node/has_memory: "0", "0-1", "0,2"). */
static int memory_nodes(void)
{
	char list[256] = "";
	FILE *f = fopen("/sys/devices/system/node/has_memory", "r");
	if (!f)
		return 1;
	if (!fgets(list, sizeof(list), f))
		list[0] = 0;
	fclose(f);
	int nodes = 0, lo = -1;
	for (char *p = list; *p && *p != '\n';) {
		char *end;
		long n = strtol(p, &end, 10);
		if (end == p)
			break;
		nodes += lo >= 0 ? (int)(n - lo) : 1;
		lo = *end == '-' ? (int)n : -1;
		p = *end ? end + 1 : end;
	}
	return nodes ? nodes : 1;
}

/* move_pages(2) of [buf, buf+len) to ``node``: the syscall's result (negative errno, or the
 * number of pages it could not move), and in *arrived the pages that are on ``node`` after. */
static long move_range(void *buf, size_t len, int node, int *arrived)
{
	size_t n = len / PAGE;
	void **pages = calloc(n, sizeof(*pages));
	int *nodes = calloc(n, sizeof(int)), *status = calloc(n, sizeof(int));
	long res = -ENOMEM;
	*arrived = 0;
	if (pages && nodes && status) {
		for (size_t i = 0; i < n; i++) {
			pages[i] = (char *)buf + i * PAGE;
			nodes[i] = node;
			status[i] = -1;
		}
		res = syscall(SYS_move_pages, 0, n, pages, nodes, status, MPOL_MF_MOVE);
		if (res < 0)
			res = -errno;
		for (size_t i = 0; i < n; i++)
			*arrived += status[i] == node;
	}
	free(pages);
	free(nodes);
	free(status);
	return res;
}

static int run_anon(size_t mib)
{
	size_t len = mib * MIB, quarter = len / 4;
	struct ring ring;
	char *raw = mmap(NULL, len + THP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (raw == MAP_FAILED)
		return printf("{\"error\": \"mmap: %s\"}\n", strerror(errno)), 1;
	/* four 2 MiB-aligned quarters: A pinned longterm, B MADV_DONTFORK, C MADV_WIPEONFORK,
	 * D pinned with FOLL_GET (vmsplice) */
	char *a = (char *)(((uintptr_t)raw + THP_SIZE - 1) & ~(THP_SIZE - 1));
	char *b = a + quarter, *c = b + quarter, *d = c + quarter;
	madvise(a, len, MADV_HUGEPAGE);
	fill(a, len, 1);
	int thps = count_thps(a, len), on_movable = count_movable(a, len);
	printf("{\"helper\": \"mh-gup\", \"mode\": \"anon\", \"bytes\": %zu, \"thps\": %d, "
	       "\"pages_on_movable\": %d, \"checks\": [",
	       len, thps, on_movable);
	if (ring_setup(&ring) < 0) {
		check("io_uring", 0, "io_uring_setup: %s (the kernel needs CONFIG_IO_URING)",
		      err_name(errno));
		goto out;
	}
	int movable_a = count_movable(a, quarter);
	char *pinned_at = a;
	int pinned = ring_pin(&ring, a, quarter);
	if (pinned) {
		check("longterm-pin", 0, "IORING_REGISTER_BUFFERS on anonymous memory: %s",
		      err_name(-pinned));
		goto out;
	}
	check("longterm-pin", mismatch(a, quarter, 1) < 0, "%d of %zu pages were on ZONE_MOVABLE",
	      movable_a, quarter / PAGE);
	int left = count_movable(a, quarter);
	check("longterm-pin-leaves-movable", left == 0,
	      "%d pinned pages still in ZONE_MOVABLE (longterm pins must be migrated out first)",
	      left);
	coherent("pin-sees-mapping", &ring, a, a, quarter, 2);

	/* fork with the pin held: the child must get its own copy, the parent keeps the pinned
	 * page (PG_anon_exclusive), and the child's writes never reach the pin */
	madvise(b, quarter, MADV_DONTFORK);
	madvise(c, quarter, MADV_WIPEONFORK);
	fill(b, quarter, 3);
	fill(c, quarter, 4);
	fill(d, quarter, 5);
	pid_t pid = fork();
	if (pid == 0) {
		int bits = 0;
		unsigned char vec;
		bits |= (mismatch(a, quarter, 2) >= 0) << 0; /* the copy of the pinned part */
		bits |= (mincore(b, PAGE, &vec) == 0 || errno != ENOMEM) << 1; /* DONTFORK: absent */
		bits |= !all_zero(c, quarter) << 2;				/* WIPEONFORK: zeroes */
		bits |= (mismatch(d, quarter, 5) >= 0) << 3;
		fill(a, quarter, 6); /* COW in the child: must not reach the parent's pinned page */
		fill(d, quarter, 7);
		_exit(bits);
	}
	int bits = child_status(pid);
	check("fork-child-copy", bits >= 0 && !(bits & 1),
	      "the child sees the pinned range as the parent wrote it (status %d)", bits);
	check("fork-dontfork", bits >= 0 && !(bits & 2), "MADV_DONTFORK range absent in the child");
	check("fork-wipeonfork", bits >= 0 && !(bits & 4), "MADV_WIPEONFORK range zero in the child");
	check("fork-unpinned", bits >= 0 && !(bits & 8), "unpinned memory shared with the child");
	{
		char *view = malloc(quarter);
		int res = view ? pin_view(&ring, pinned_at, quarter, view) : -ENOMEM;
		long bad = res ? -2 : mismatch(view, quarter, 2);
		check("fork-child-writes-stay-private", bad == -1,
		      "after the child wrote its copy, the pin %s",
		      bad == -1 ? "still holds the parent's data"
				: (res ? "could not be read" : "sees the child's or stale data"));
		free(view);
	}
	check("fork-parent-mapping", mismatch(a, quarter, 2) < 0 && mismatch(d, quarter, 5) < 0,
	      "the parent's mapping kept its data");
	coherent("fork-parent-write-reaches-pin", &ring, a, a, quarter, 8);
	{
		int res = pin_store(&ring, pinned_at, quarter, 9);
		long bad = mismatch(a, quarter, 9);
		check("fork-pin-write-reaches-parent", !res && bad < 0,
		      "data written through the pin %s", res ? err_name(-res)
			      : (bad < 0 ? "shows in the mapping" : "does not show in the mapping"));
	}

	/* mremap the pinned range elsewhere: the pages move with the mapping */
	char *moved = mmap(NULL, quarter + THP_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *dst = (char *)(((uintptr_t)moved + THP_SIZE - 1) & ~(THP_SIZE - 1));
	if (moved != MAP_FAILED &&
	    mremap(a, quarter, quarter, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst) {
		a = dst;
		check("mremap", mismatch(a, quarter, 9) < 0, "the moved mapping kept its data");
		coherent("mremap-pin-follows", &ring, a, pinned_at, quarter, 10);
	} else {
		check("mremap", 0, "mremap: %s", err_name(errno));
	}

	/* NUMA migration (move_pages) to the last node, which a layout with numa gives the
	 * movable memory: unpinned pages must arrive with their data; longterm-pinned ones
	 * must not land in ZONE_MOVABLE and the pin must still see the mapping either way */
	int nodes = memory_nodes();
	if (nodes < 2) {
		check("move-pages", 1, "skipped: one node with memory (a layout's numa adds one)");
	} else {
		int arrived = 0, target = nodes - 1;
		long res = move_range(c, quarter, target, &arrived);
		check("move-pages-unpinned", res >= 0 && arrived > 0 && mismatch(c, quarter, 4) < 0,
		      "move_pages of %zu unpinned pages to node %d: %ld not moved, %d arrived, data %s",
		      quarter / PAGE, target, res, arrived,
		      mismatch(c, quarter, 4) < 0 ? "kept" : "lost");
		res = move_range(a, quarter, target, &arrived);
		int in_movable = count_movable(a, quarter);
		check("move-pages-longterm-pinned", in_movable == 0,
		      "move_pages of %zu longterm-pinned pages to node %d: %ld not moved, %d "
		      "arrived, %d in ZONE_MOVABLE", quarter / PAGE, target, res, arrived, in_movable);
		coherent("move-pages-pin-coherent", &ring, a, pinned_at, quarter, 15);
		/* the page the FOLL_GET checks below use goes to the movable node first */
		move_range(d, PAGE, target, &arrived);
	}

	/* migration: soft offline of pinned pages must fail, or leave the pin and the mapping
	 * on one page */
	{
		int res = madvise(a + PAGE, PAGE, MADV_SOFT_OFFLINE) ? errno : 0;
		check("soft-offline-pinned", res != EFAULT && res != EINVAL,
		      "MADV_SOFT_OFFLINE of a longterm-pinned page: %s", err_name(res));
		coherent("soft-offline-pin-coherent", &ring, a, pinned_at, quarter, 11);
	}
	int thps_before = count_thps(a, len);
	int split = split_all_thps();
	check("split-thps", split == 0 || split == -ENOENT, "split_huge_pages: %s%s",
	      err_name(-split), split == -ENOENT ? " (no debugfs file: kernel without THP)" : "");
	check("thps", 1, "THPs before the split: %d, after: %d", thps_before, count_thps(a, len));
	coherent("split-pin-coherent", &ring, a, pinned_at, quarter, 12);
	check("split-data", mismatch(d, quarter, 5) < 0 && mismatch(c, quarter, 4) < 0,
	      "split THPs kept their data");

	/* FOLL_GET: a page of D referenced by a pipe; offlining its block must fail cleanly
	 * (the page cannot migrate), then succeed once the pipe lets go.  The page is written
	 * first: since the fork it was shared, and a FOLL_GET reference to a shared page makes
	 * no promise (a later write copies it; only FOLL_PIN unshares).  Written, it is
	 * exclusive again, and the pipe and the mapping hold one page. */
	fill(d, PAGE, 13);
	{
		int pipes[2];
		struct iovec iov = {.iov_base = d, .iov_len = PAGE};
		uint64_t pfn = pfn_of(d);
		char *back = malloc(PAGE);
		if (pipe(pipes) < 0 || vmsplice(pipes[1], &iov, 1, 0) != (ssize_t)PAGE) {
			check("vmsplice", 0, "vmsplice: %s", err_name(errno));
		} else if (!movable(pfn)) {
			check("offline-with-get-pin", 1, "skipped: pfn %#" PRIx64
			      " is not in a movable block (no hot-plugged movable memory?)", pfn);
			close(pipes[0]);
			close(pipes[1]);
		} else {
			int res = block_state(pfn, "offline", 8);
			check("offline-with-get-pin", res != 0 && pfn_of(d) == pfn,
			      "offlining the block of a pipe-referenced page: %s, the page %s",
			      err_name(-res), pfn_of(d) == pfn ? "stayed" : "moved");
			if (res == 0)
				block_state(pfn, "online_movable", 30);
			fill(d, PAGE, 14);
			long got = read(pipes[0], back, PAGE);
			check("get-pin-coherent", got == (long)PAGE && mismatch(back, PAGE, 14) < 0,
			      "the pipe's page is the mapped page (read %ld)", got);
			close(pipes[0]);
			close(pipes[1]);
			res = block_state(pfn, "offline", 60);
			check("offline-after-release", res == 0 && mismatch(d, PAGE, 14) < 0 &&
			      pfn_of(d) != pfn, "offline once the pipe let go: %s, data %s",
			      err_name(-res), mismatch(d, PAGE, 14) < 0 ? "kept" : "lost");
			if (res == 0)
				block_state(pfn, "online_movable", 30);
		}
		free(back);
	}
	ring_unpin(&ring);
out:
	printf("], \"failures\": %d}\n", failures);
	return failures ? 1 : 0;
}

/* ---- hold: pins held while a command runs --------------------------------------------- */
/* One SIGBUS landing per thread: the toucher's, then the main thread's checks after CMD. */
static __thread sigjmp_buf bus_jump;
static void on_bus(int sig) { (void)sig; siglongjmp(bus_jump, 1); }

/* A thread (not a child: a fork would make anonymous pages copy-on-write, and a FOLL_GET
 * reference makes no promise across a fork) that writes to every page until told to stop;
 * ends "ok", or "SIGBUS" when the mapping was taken away, which is the kernel's right (using
 * freed memory is not). */
struct touch {
	volatile char *map;
	size_t len;
	size_t skip_off, skip_len; /* the O_DIRECT read's pages: the read owns them */
	volatile int stop;
	const char *ended;
};

static void *toucher(void *arg)
{
	struct touch *t = arg;
	if (sigsetjmp(bus_jump, 1)) {
		t->ended = "SIGBUS";
		return NULL;
	}
	while (!t->stop) {
		for (size_t off = 0; off < t->len; off += PAGE)
			if (off - t->skip_off >= t->skip_len)
				t->map[off + 8] = (char)(t->map[off + 8] + 1);
		usleep(1000);
	}
	t->ended = "ok";
	return NULL;
}

/* An O_DIRECT read in flight (FOLL_GET/FOLL_PIN by the block layer, as long as the device
 * takes): a thread reads from the slow disk, whose every request QEMU delays, into pages of
 * the mapping that nothing else writes; the disk reads zeros over the pattern put there. */
#define DIRECT_OFF (THP_SIZE / 2 + 16 * PAGE)
#define DIRECT_LEN (16 * PAGE)
struct direct {
	int fd;
	char *buf;
	char disk[64];	  /* e.g. vdb */
	volatile int done;
	long got; /* bytes read, or -errno */
};

static void *direct_reader(void *arg)
{
	struct direct *d = arg;
	ssize_t n = pread(d->fd, d->buf, DIRECT_LEN, 0);
	d->got = n < 0 ? -errno : n;
	d->done = 1;
	return NULL;
}

/* The block device whose /sys/block/X/serial is ``serial``, opened O_DIRECT; -1 if none. */
static int open_by_serial(const char *serial, char *disk, size_t size)
{
	static const char *names[] = {"vda", "vdb", "vdc", "vdd", "vde", "vdf"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[96], got[128] = "";
		snprintf(path, sizeof(path), "/sys/block/%s/serial", names[i]);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		int found = fgets(got, sizeof(got), f) && strncmp(got, serial, strlen(serial)) == 0;
		fclose(f);
		if (found) {
			snprintf(disk, size, "%s", names[i]);
			snprintf(path, sizeof(path), "/dev/%s", names[i]);
			return open(path, O_RDONLY | O_DIRECT);
		}
	}
	errno = ENODEV;
	return -1;
}

/* Reads the kernel's count of ``disk``'s requests in flight (/sys/block/X/inflight). */
static long in_flight(const char *disk)
{
	char path[96];
	long reads = -1, writes = 0;
	snprintf(path, sizeof(path), "/sys/block/%s/inflight", disk);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &reads, &writes) != 2)
			reads = -1;
		fclose(f);
	}
	return reads < 0 ? -1 : reads + writes;
}

/* Starts the O_DIRECT read and waits (5 s at most) until the disk has it in flight: 1 when it
 * is, 0 when it never showed up (or already completed), -errno when it could not start. */
static int direct_start(struct direct *d, pthread_t *thread)
{
	if (pthread_create(thread, NULL, direct_reader, d) != 0)
		return -EAGAIN;
	for (int i = 0; i < 500 && !d->done; i++) {
		if (in_flight(d->disk) > 0)
			return 1;
		usleep(10000);
	}
	return 0;
}

static int run_hold(const char *kind, const char *path, const char *direct_serial, char **cmd)
{
	size_t len = THP_SIZE;
	int fd = -1, shared = strcmp(kind, "anon") != 0;
	struct ring ring;
	if (strcmp(kind, "file") == 0) {
		fd = open(path, O_RDWR | O_CREAT, 0600);
		if (fd >= 0 && ftruncate(fd, (off_t)len) < 0)
			fd = -1;
	} else if (shared) {
		fd = open(path, O_RDWR);
	}
	if (shared && fd < 0)
		return printf("{\"error\": \"open %s: %s\"}\n", path, strerror(errno)), 1;
	char *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 shared ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS, fd, 0);
	if (map == MAP_FAILED)
		return printf("{\"error\": \"mmap %s: %s\"}\n", path, strerror(errno)), 1;
	fill(map, len, 1);
	uint64_t pfn = pfn_of(map);
	int ring_ok = ring_setup(&ring) == 0;
	int longterm = ring_ok ? ring_pin(&ring, map, len / 2) : -ENOSYS;
	/* the FOLL_GET pin: a page in a pipe, held until the checks; or with --direct, an
	 * O_DIRECT read in flight (below) instead, so that what happens to it is its own */
	int pipes[2], get = direct_serial ? 1 : 0;
	struct iovec iov = {.iov_base = map + len / 2, .iov_len = PAGE};
	if (!direct_serial && (pipe(pipes) < 0 || vmsplice(pipes[1], &iov, 1, 0) != (ssize_t)PAGE))
		get = -errno;
	struct direct direct = {.fd = -1, .buf = map + DIRECT_OFF, .got = -ENODEV};
	pthread_t direct_thread;
	int direct_flight = -ENODEV;
	if (direct_serial) {
		fill(direct.buf, DIRECT_LEN, 4);
		direct.fd = open_by_serial(direct_serial, direct.disk, sizeof(direct.disk));
		direct_flight = direct.fd < 0 ? -errno : direct_start(&direct, &direct_thread);
	}
	printf("{\"helper\": \"mh-gup\", \"mode\": \"hold\", \"mapping\": \"%s\", \"pfn\": %" PRIu64
	       ", \"longterm_pin\": \"%s\", \"get_pin\": \"%s\", \"direct_read\": \"%s\", ",
	       kind, pfn, err_name(-longterm), get == 1 ? "none" : err_name(-get),
	       !direct_serial ? "none"
	       : direct_flight == 1 ? "in flight"
	       : direct_flight == 0 ? "not seen in flight"
				      : err_name(-direct_flight));
	fflush(stdout);

	/* the command runs with the pins held and a thread touching every page (past the
	 * first word of each, which the coherence checks below own) */
	struct touch touch = {.map = map,
			      .len = len,
			      .skip_off = DIRECT_OFF,
			      .skip_len = direct_serial ? DIRECT_LEN : 0,
			      .ended = "died"};
	struct sigaction bus = {.sa_handler = on_bus};
	pthread_t thread;
	sigaction(SIGBUS, &bus, NULL);
	if (pthread_create(&thread, NULL, toucher, &touch) != 0)
		return printf("\"error\": \"pthread_create\"}\n"), 1;
	char out_name[] = "/tmp/mh-gup-XXXXXX";
	int out = mkstemp(out_name);
	/* posix_spawn, not fork: glibc spawns with CLONE_VM|CLONE_VFORK, so no page of ours is
	 * ever shared copy-on-write with the command (which would end the FOLL_GET page's
	 * exclusivity, and the next write would copy it away from the pipe) */
	posix_spawn_file_actions_t actions;
	pid_t pid = -1;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, out, 1);
	int status = posix_spawnp(&pid, cmd[0], &actions, NULL, cmd, environ) ? 127
										 : child_status(pid);
	posix_spawn_file_actions_destroy(&actions);
	int direct_done_with_command = direct.done;
	touch.stop = 1;
	pthread_join(thread, NULL);
	if (direct_flight >= 0)
		pthread_join(direct_thread, NULL);
	printf("\"command_status\": %d, \"toucher\": \"%s\", ", status, touch.ended);
	if (direct_serial)
		printf("\"direct_read_done_before_command_ended\": %s, \"direct_read_result\": %ld, ",
		       direct_done_with_command ? "true" : "false", direct.got);
	printf("\"command_output\": \"");
	{
		char buf[4096];
		ssize_t n;
		lseek(out, 0, SEEK_SET);
		while ((n = read(out, buf, sizeof(buf))) > 0)
			for (ssize_t i = 0; i < n; i++) {
				unsigned char ch = (unsigned char)buf[i];
				if (ch == '"' || ch == '\\')
					printf("\\%c", ch);
				else if (ch < 0x20)
					printf("\\u%04x", ch);
				else
					putchar(ch);
			}
		close(out);
		unlink(out_name);
	}
	printf("\", \"checks\": [");
	if (direct_serial)
		check("direct-read-in-flight", direct_flight == 1,
		      direct_flight == 1	? "the O_DIRECT read was in flight on %s when the command started"
		      : direct_flight == 0 ? "the O_DIRECT read was never in flight on %s: raise slow_disk"
					   : "no O_DIRECT read on the disk with serial %s: is slow_disk set?",
		      direct_flight == 1 || direct_flight == 0 ? direct.disk : direct_serial);
	if (sigsetjmp(bus_jump, 1)) { /* on_bus is installed since the toucher started */
		check("mapping-after", 1, "the mapping is gone (SIGBUS): the kernel took it away");
	} else {
		if (direct_flight == 1) {
			/* the read either failed cleanly or wrote its zeros into the very pages
			 * the mapping shows, never into pages that stopped being them */
			long got = direct.got;
			int landed = got >= 0 && all_zero(direct.buf, (size_t)got);
			check("direct-read-coherent", got < 0 || landed,
			      got < 0  ? "the read failed cleanly (%s)"
			      : landed ? "the read's data (%s) is in the mapped pages"
				       : "the mapping does not show what the O_DIRECT read wrote (%s): "
					 "the block layer wrote pages the mapping no longer has",
			      got < 0 ? err_name((int)-got) : "zeros");
		}
		if (longterm == 0)
			coherent("longterm-pin-coherent", &ring, map, map, len / 2, 2);
		if (get == 0) {
			char *back = malloc(PAGE);
			fill(map + len / 2, PAGE, 3);
			long got = read(pipes[0], back, PAGE);
			check("get-pin-coherent", got == (long)PAGE && mismatch(back, PAGE, 3) < 0,
			      "the pipe's page is the mapped page (read %ld)", got);
			free(back);
		}
		check("mapping-after", 1, "the mapping is still usable");
	}
	if (longterm == 0)
		ring_unpin(&ring);
	printf("], \"failures\": %d}\n", failures);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "anon") == 0)
		return run_anon(argc > 2 ? strtoul(argv[2], NULL, 0) : 8);
	if (argc >= 6 && strcmp(argv[1], "hold") == 0 && strcmp(argv[4], "--") == 0)
		return run_hold(argv[2], argv[3], NULL, argv + 5);
	if (argc >= 8 && strcmp(argv[1], "hold") == 0 && strcmp(argv[4], "--direct") == 0 &&
	    strcmp(argv[6], "--") == 0)
		return run_hold(argv[2], argv[3], argv[5], argv + 7);
	fprintf(stderr, "usage: mh-gup anon [MIB]\n"
			"       mh-gup hold anon|file|devdax PATH [--direct SERIAL] -- CMD [ARG...]\n");
	return 2;
}
