/*
 * mh-walk: pfn walkers for memharness, one static binary per guest arch.
 *
 *   mh-walk kpageflags   START_PFN COUNT        /proc/kpageflags + /proc/kpagecount, decoded
 *   mh-walk soft-offline START_PFN COUNT [STRIDE]
 *                                               /sys/devices/system/memory/soft_offline_page
 *                                               (pfns with a struct page: every STRIDE-th)
 *   mh-walk hwpoison     START_PFN COUNT [STRIDE [keep]]
 *                                               debugfs hwpoison corrupt-pfn, then unpoison-pfn
 *                                               (every STRIDE-th pfn; keep: leave the poison)
 *   mh-walk idle         START_PFN COUNT        /sys/kernel/mm/page_idle/bitmap read + write
 *   mh-walk madvise      anon|file|fsdax|devdax [PATH] [hwpoison]
 *                                               MADV_SOFT_OFFLINE (or MADV_HWPOISON) on a mapping
 *
 * Every walker prints one JSON object: the per-pfn results compressed into runs of equal
 * results ({"pfn", "n", ...}), plus timing.  Walking never stops at the first error: the point
 * is to visit every pfn of a section and let the kernel show what it does with each.
 *
 * hwpoison only injects into pfns that /proc/kpageflags reports as free (BUDDY) or as having
 * no online struct page (NOPAGE, i.e. ZONE_DEVICE or offline memory): poisoning an in-use RAM
 * page would kill the guest's own processes, which tests nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif
#ifndef MADV_HWPOISON
#define MADV_HWPOISON 100
#endif

#define KPF_BUDDY 10
#define KPF_NOPAGE 20

static const char *const kpf_names[64] = {
	[0] = "LOCKED", [1] = "ERROR", [2] = "REFERENCED", [3] = "UPTODATE", [4] = "DIRTY",
	[5] = "LRU", [6] = "ACTIVE", [7] = "SLAB", [8] = "WRITEBACK", [9] = "RECLAIM",
	[10] = "BUDDY", [11] = "MMAP", [12] = "ANON", [13] = "SWAPCACHE", [14] = "SWAPBACKED",
	[15] = "COMPOUND_HEAD", [16] = "COMPOUND_TAIL", [17] = "HUGE", [18] = "UNEVICTABLE",
	[19] = "HWPOISON", [20] = "NOPAGE", [21] = "KSM", [22] = "THP", [23] = "OFFLINE",
	[24] = "ZERO_PAGE", [25] = "IDLE", [26] = "PGTABLE", [32] = "RESERVED", [33] = "MLOCKED",
	[34] = "MAPPEDTODISK", [35] = "PRIVATE", [36] = "PRIVATE_2", [37] = "OWNER_PRIVATE",
	[38] = "ARCH", [39] = "UNCACHED", [40] = "SOFTDIRTY", [41] = "ARCH_2",
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
	exit(1);
}

/* Runs of equal results, printed as a JSON array as they close. */
struct runs {
	int open, first;
	uint64_t pfn, n;
	char key[256];
};

static void run_close(struct runs *r)
{
	if (!r->open)
		return;
	printf("%s{\"pfn\": %" PRIu64 ", \"n\": %" PRIu64 ", %s}", r->first ? "" : ", ", r->pfn,
	       r->n, r->key);
	r->first = 0;
	r->open = 0;
}

static void run_add(struct runs *r, uint64_t pfn, const char *key)
{
	if (r->open && r->pfn + r->n == pfn && strcmp(r->key, key) == 0) {
		r->n++;
		return;
	}
	run_close(r);
	r->open = 1;
	r->pfn = pfn;
	r->n = 1;
	snprintf(r->key, sizeof(r->key), "%s", key);
}

static void flag_names(uint64_t flags, char *out, size_t size)
{
	size_t len = 0;
	out[0] = 0;
	for (int b = 0; b < 64; b++) {
		if (!(flags & (1ULL << b)))
			continue;
		const char *name = kpf_names[b] ? kpf_names[b] : "?";
		len += (size_t)snprintf(out + len, size - len, "%s%s", len ? "|" : "", name);
		if (len >= size)
			break;
	}
}

static int read_u64s(const char *path, uint64_t start, uint64_t count, uint64_t *out)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t want = (ssize_t)(count * 8), got = pread(fd, out, (size_t)want, (off_t)(start * 8));
	int saved = errno;
	close(fd);
	errno = saved;
	if (got < 0)
		return -1;
	memset((char *)out + got, 0xff, (size_t)(want - got)); /* beyond max_pfn: unknown */
	return (int)(got / 8);
}

static int walk_kpageflags(uint64_t start, uint64_t count)
{
	uint64_t *flags = calloc(count, 8), *refs = calloc(count, 8);
	double t0 = now();
	char key[256], names[200];
	struct runs r = {.first = 1};
	uint64_t nopage = 0, hwpoison = 0;

	if (!flags || !refs)
		die("calloc");
	/* /proc/kpageflags ends at max_pfn (rounded to a section): pfns beyond it are not
	 * reported at all, which is not the same as KPF_NOPAGE, so they get a name of their own. */
	int reported = read_u64s("/proc/kpageflags", start, count, flags);
	if (reported < 0)
		die("/proc/kpageflags");
	if (read_u64s("/proc/kpagecount", start, count, refs) < 0)
		die("/proc/kpagecount");
	double t1 = now();
	printf("{\"walker\": \"kpageflags\", \"start_pfn\": %" PRIu64 ", \"count\": %" PRIu64
	       ", \"runs\": [", start, count);
	for (uint64_t i = 0; i < count; i++) {
		if (i >= (uint64_t)reported) {
			run_add(&r, start + i, "\"flags\": \"unreported\", \"names\": \"UNREPORTED\", \"refs\": -1");
			continue;
		}
		flag_names(flags[i], names, sizeof(names));
		snprintf(key, sizeof(key), "\"flags\": \"0x%" PRIx64 "\", \"names\": \"%s\", \"refs\": %" PRId64,
			 flags[i], names, (int64_t)refs[i]);
		run_add(&r, start + i, key);
		nopage += !!(flags[i] & (1ULL << KPF_NOPAGE));
		hwpoison += !!(flags[i] & (1ULL << 19));
	}
	run_close(&r);
	printf("], \"nopage\": %" PRIu64 ", \"hwpoison\": %" PRIu64 ", \"seconds\": %.4f}\n",
	       nopage, hwpoison, t1 - t0);
	return 0;
}

/*
 * Writes ``text`` to a sysfs/debugfs control file.  The file stays open between calls (one
 * write per pfn, tens of thousands per walk): opening it each time tripled the cost under TCG.
 */
static int write_str(const char *path, const char *text)
{
	static struct {
		const char *path;
		int fd;
	} open_files[4];
	int fd = -1;

	for (size_t i = 0; i < sizeof(open_files) / sizeof(open_files[0]); i++) {
		if (open_files[i].path == path) {
			fd = open_files[i].fd;
			break;
		}
		if (!open_files[i].path) {
			fd = open(path, O_WRONLY);
			if (fd < 0)
				return errno;
			open_files[i].path = path;
			open_files[i].fd = fd;
			break;
		}
	}
	if (fd < 0)
		return EMFILE;
	/* debugfs attributes are not seekable (pwrite gives ESPIPE); rewind what can be. */
	(void)lseek(fd, 0, SEEK_SET);
	ssize_t n = write(fd, text, strlen(text));
	return n < 0 ? errno : 0;
}

static const char *errname(int err)
{
	switch (err) {
	case 0: return "ok";
	case EIO: return "EIO";
	case EBUSY: return "EBUSY";
	case EINVAL: return "EINVAL";
	case ENXIO: return "ENXIO";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ENOMEM: return "ENOMEM";
	case EHWPOISON: return "EHWPOISON";
	case EFAULT: return "EFAULT";
	case ESPIPE: return "ESPIPE";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOSYS: return "ENOSYS";
	default: {
		static char buf[32];
		snprintf(buf, sizeof(buf), "errno%d", err);
		return buf;
	}
	}
}

/* The walkers that decide per pfn from its kpageflags: read them, open the JSON object. */
static uint64_t *begin_flag_walk(const char *walker, uint64_t start, uint64_t count)
{
	uint64_t *flags = calloc(count, 8);

	if (!flags)
		die("calloc");
	if (read_u64s("/proc/kpageflags", start, count, flags) < 0)
		die("/proc/kpageflags");
	printf("{\"walker\": \"%s\", \"start_pfn\": %" PRIu64 ", \"count\": %" PRIu64
	       ", \"runs\": [", walker, start, count);
	return flags;
}

/*
 * Soft offline migrates a RAM page's contents and retires the page: under TCG that costs
 * ~0.5 ms a page, so pfns with an online struct page are visited at a stride; pfns without
 * one (ZONE_DEVICE, holes) are all visited, they are what the walk is about.
 */
static int walk_soft_offline(uint64_t start, uint64_t count, uint64_t stride)
{
	long page = sysconf(_SC_PAGESIZE);
	char buf[64], key[64];
	struct runs r = {.first = 1};
	double t0 = now();
	uint64_t *flags = begin_flag_walk("soft-offline", start, count);

	for (uint64_t i = 0; i < count; i++) {
		int online = flags[i] != ~0ULL && !(flags[i] & (1ULL << KPF_NOPAGE));
		const char *result = "skipped";
		if (!online || (start + i) % stride == 0) {
			snprintf(buf, sizeof(buf), "0x%" PRIx64, (start + i) * (uint64_t)page);
			result = errname(write_str("/sys/devices/system/memory/soft_offline_page", buf));
		}
		snprintf(key, sizeof(key), "\"result\": \"%s\"", result);
		run_add(&r, start + i, key);
	}
	run_close(&r);
	printf("], \"seconds\": %.4f}\n", now() - t0);
	return 0;
}

static int walk_hwpoison(uint64_t start, uint64_t count, uint64_t stride, int keep)
{
	char buf[64], key[96];
	struct runs r = {.first = 1};
	double t0 = now();
	uint64_t *flags = begin_flag_walk("hwpoison", start, count);

	for (uint64_t i = 0; i < count; i++) {
		uint64_t f = flags[i];
		const char *inject, *unpoison = "skipped";
		if (f == ~0ULL || !(f & ((1ULL << KPF_BUDDY) | (1ULL << KPF_NOPAGE))) ||
		    (start + i) % stride) {
			inject = "skipped";
		} else {
			snprintf(buf, sizeof(buf), "0x%" PRIx64, start + i);
			inject = errname(write_str("/sys/kernel/debug/hwpoison/corrupt-pfn", buf));
			if (!keep)
				unpoison = errname(write_str("/sys/kernel/debug/hwpoison/unpoison-pfn", buf));
			else
				unpoison = "kept";
		}
		snprintf(key, sizeof(key), "\"inject\": \"%s\", \"unpoison\": \"%s\"", inject, unpoison);
		run_add(&r, start + i, key);
	}
	run_close(&r);
	printf("], \"seconds\": %.4f}\n", now() - t0);
	return 0;
}

static int walk_idle(uint64_t start, uint64_t count)
{
	/* The bitmap is u64 words of 64 pfns; walk the words covering the range. */
	uint64_t first = start / 64, words = (start + count + 63) / 64 - first;
	uint64_t *bits = calloc(words, 8);
	char key[64];
	struct runs r = {.first = 1};
	double t0 = now();
	int fd = open("/sys/kernel/mm/page_idle/bitmap", O_RDWR);

	if (!bits)
		die("calloc");
	if (fd < 0)
		die("/sys/kernel/mm/page_idle/bitmap");
	printf("{\"walker\": \"idle\", \"start_pfn\": %" PRIu64 ", \"count\": %" PRIu64
	       ", \"runs\": [", start, count);
	for (uint64_t w = 0; w < words; w++) {
		uint64_t all = ~0ULL;
		ssize_t wr = pwrite(fd, &all, 8, (off_t)((first + w) * 8));
		int werr = wr < 0 ? errno : 0;
		ssize_t rd = pread(fd, &bits[w], 8, (off_t)((first + w) * 8));
		int rerr = rd < 0 ? errno : 0;
		for (uint64_t b = 0; b < 64; b++) {
			uint64_t pfn = (first + w) * 64 + b;
			if (pfn < start || pfn >= start + count)
				continue;
			snprintf(key, sizeof(key), "\"write\": \"%s\", \"read\": \"%s\", \"idle\": %d",
				 errname(werr), errname(rerr), rerr ? 0 : (int)((bits[w] >> b) & 1));
			run_add(&r, pfn, key);
		}
	}
	close(fd);
	run_close(&r);
	printf("], \"seconds\": %.4f}\n", now() - t0);
	return 0;
}

static int walk_madvise(const char *kind, const char *path, int hwpoison)
{
	size_t len = 2 << 20; /* one 2 MiB extent: a devdax mapping needs its alignment */
	int fd = -1, flags = MAP_SHARED;
	void *map;
	double t0 = now();

	if (strcmp(kind, "anon") == 0) {
		flags = MAP_PRIVATE | MAP_ANONYMOUS;
	} else {
		if (!path)
			die("a path is needed for file, fsdax and devdax mappings");
		fd = open(path, O_RDWR | O_CREAT, 0600);
		if (fd < 0)
			die(path);
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size < len &&
		    ftruncate(fd, (off_t)len) < 0)
			die("ftruncate");
	}
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	memset(map, 0x5a, len); /* fault every page in */
	int rc = madvise(map, (size_t)sysconf(_SC_PAGESIZE), hwpoison ? MADV_HWPOISON : MADV_SOFT_OFFLINE);
	int err = rc < 0 ? errno : 0;
	printf("{\"walker\": \"madvise\", \"mapping\": \"%s\", \"advice\": \"%s\", \"result\": \"%s\", "
	       "\"seconds\": %.4f}\n", kind, hwpoison ? "MADV_HWPOISON" : "MADV_SOFT_OFFLINE",
	       errname(err), now() - t0);
	munmap(map, len);
	if (fd >= 0)
		close(fd);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: mh-walk kpageflags|idle START_PFN COUNT\n"
			"       mh-walk soft-offline START_PFN COUNT [STRIDE]\n"
			"       mh-walk hwpoison START_PFN COUNT [STRIDE [keep]]\n"
			"       mh-walk madvise anon|file|fsdax|devdax [PATH] [hwpoison]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	if (strcmp(argv[1], "madvise") == 0) {
		const char *path = argc > 3 && strcmp(argv[3], "hwpoison") ? argv[3] : NULL;
		int hwpoison = strcmp(argv[argc - 1], "hwpoison") == 0;
		return walk_madvise(argv[2], path, hwpoison);
	}
	if (argc < 4)
		return usage();
	uint64_t start = strtoull(argv[2], NULL, 0), count = strtoull(argv[3], NULL, 0);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (strcmp(argv[1], "kpageflags") == 0)
		return walk_kpageflags(start, count);
	if (strcmp(argv[1], "soft-offline") == 0) {
		uint64_t stride = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
		return walk_soft_offline(start, count, stride ? stride : 1);
	}
	if (strcmp(argv[1], "hwpoison") == 0) {
		uint64_t stride = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
		return walk_hwpoison(start, count, stride ? stride : 1,
				     argc > 5 && strcmp(argv[5], "keep") == 0);
	}
	if (strcmp(argv[1], "idle") == 0)
		return walk_idle(start, count);
	return usage();
}
