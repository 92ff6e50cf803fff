/*
 * finit: bootverify's in-guest module loader, run by the agent's init (see init, bv_run).
 *
 *   finit PLAN FROM TO WATCHDOG_MS MARK [LINE...]
 *
 * Walks PLAN's `PATH PARAMS` lines FROM..TO (TO 0: to the end; with LINEs, only those) and
 * loads each module with finit_module() in a child, exactly once, as Android's libmodprobe
 * does; a compressed file with MODULE_INIT_COMPRESSED_FILE, as kmod does. For each module it prints the /dev/kmsg records the load wrote
 * (`LEVEL,SEQ,USEC,FLAGS;TEXT`), then `MARK:M<line>:<label>:<value>:<usec>`:
 *   finit    finit_module() returned VALUE (0 or -errno)
 *   open     the file did not open (VALUE: -errno)
 *   killed   the child died in finit_module(), an oops (VALUE: the signal); exit status 3
 *   timeout  init had not returned after WATCHDOG_MS; exit status 4
 * and stops after killed or timeout. With MARK "" (restoring after a reboot) it prints only
 * `restore failed: <line>` for a module that did not load. Exit status 2: bad usage or no plan.
 *
 * Why not busybox insmod: after a failing finit_module() it retries with init_module(), so a
 * failing init runs twice and logs everything twice, and an exit status cannot carry the
 * errno (kernel-internal codes such as EPROBE_DEFER 517 do not fit in 8 bits). Why one
 * process for the whole plan: on TCG every fork+exec costs ~15 ms.
 *
 * Built against the kernel's nolibc (see Makefile): static, no libc, a few KiB.
 */
#include "nolibc.h"

/* Not in nolibc 6.1's arch-aarch64.h; values from arch/arm64/include/uapi/asm/fcntl.h and
 * include/uapi/asm-generic/fcntl.h. */
#define O_NOFOLLOW	0100000
#define O_CLOEXEC	02000000

/* include/uapi/linux/module.h, 5.17 and later: the kernel decompresses the file itself
 * (CONFIG_MODULE_DECOMPRESS, kernel/module/decompress.c). */
#define MODULE_INIT_COMPRESSED_FILE	4

/* CONSOLE_EXT_LOG_MAX (include/linux/printk.h): a /dev/kmsg read returns one whole record,
 * or -EINVAL if the buffer is smaller than it. */
#define KMSG_RECORD_MAX	8192
#define KMSG_PATH_MAX	400		/* of PATH in our own record: the line stays short */

enum { LOADED, FAILED, KILLED = 3, TIMEOUT = 4 };	/* KILLED, TIMEOUT: the exit status */

/* Written by the child: its return value does not survive an exit status (see above). */
static struct result {
	long ret;		/* finit_module()'s or openat()'s */
	long open_failed;
} *result;

/* nolibc 6.1 has no wrappers for these; the numbers are the asm-generic table's
 * (include/uapi/asm-generic/unistd.h, which arm64 uses): finit_module 273, pidfd_open 434,
 * ppoll 73 (the table has no poll), clock_gettime 113, fstat 80. */
static long finit_module(int fd, const char *params, int flags)
{
	return my_syscall3(__NR_finit_module, fd, params, flags);
}

/* Whether the file starts with a magic that kernel/module/decompress.c takes: gzip 1f 8b,
 * xz fd '7zXZ' 00, zstd 28 b5 2f fd. The host leaves compressed only the files whose format
 * this kernel decompresses (kmod's test of /sys/module/compression) and hands the others over
 * decompressed. finit_module() reads the file from offset 0, wherever this read left it. */
static int compressed(int fd)
{
	static const unsigned char xz[6] = { 0xfd, '7', 'z', 'X', 'Z', 0 };
	unsigned char m[6] = { 0 };
	int i;

	if (sys_read(fd, m, sizeof(m)) < 2)
		return 0;
	if ((m[0] == 0x1f && m[1] == 0x8b) ||
	    (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd))
		return 1;
	for (i = 0; i < 6; i++)
		if (m[i] != xz[i])
			return 0;
	return 1;
}

static long now_ns(void)
{
	struct timespec ts;

	my_syscall2(__NR_clock_gettime, CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static unsigned long atou(const char *s)
{
	unsigned long n = 0;

	while (*s >= '0' && *s <= '9')
		n = n * 10 + (*s++ - '0');
	return n;
}

/* Each output line is built in a buffer and written with one write(): the host reads it
 * from the console that an oops is printed on too, and a line in pieces could be split. */
static char *put(char *p, char *end, const char *s, long max)
{
	while (*s && p < end && max--)
		*p++ = *s++;
	return p;
}

static char *put_num(char *p, char *end, long v)
{
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
	char digits[20];
	int n = 0;

	if (v < 0 && p < end)
		*p++ = '-';
	do
		digits[n++] = '0' + u % 10;
	while (u /= 10);
	while (n && p < end)
		*p++ = digits[--n];
	return p;
}

/* The plan in private memory, NUL-terminated, so that its lines can be cut in place. */
static char *read_plan(const char *name, char **end)
{
	struct sys_stat_struct st;
	long fd, got = 0, r;
	char *buf;

	fd = sys_open(name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0 || my_syscall2(__NR_fstat, fd, &st) < 0)
		return NULL;
	buf = sys_mmap(NULL, st.st_size + 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((unsigned long)buf >= -4095UL)
		return NULL;
	while (got < st.st_size && (r = sys_read(fd, buf + got, st.st_size - got)) > 0)
		got += r;
	sys_close(fd);
	*end = buf + got;
	return buf;
}

static int listed(unsigned long line, char **lines, int nlines)
{
	int i;

	if (!nlines)
		return 1;
	for (i = 0; i < nlines; i++)
		if (atou(lines[i]) == line)
			return 1;
	return 0;
}

/* "<15>": facility user, level debug (devkmsg_write() in kernel/printk/printk.c): in the log
 * but not on the console (init runs `dmesg -n 2`). Then read on from the log's end, so that
 * what follows is this load's records only. */
static void announce(int kmsg, const char *path)
{
	char buf[64 + KMSG_PATH_MAX], *p = buf, *end = buf + sizeof(buf) - 1;

	p = put(p, end, "<15>bootverify: loading ", -1);
	p = put(p, end, path, KMSG_PATH_MAX);
	*p++ = '\n';	/* ends the record: without it the record stays open, past SEEK_END */
	sys_write(kmsg, buf, p - buf);
	sys_lseek(kmsg, 0, SEEK_END);
}

/* Each read returns one record; -EPIPE: the ring overwrote records not read yet, and the
 * reader moved on to the oldest one left; -EAGAIN (O_NONBLOCK): no more. The buffer is on the
 * stack, whose page is written after every fork anyway: in .bss it would be one more page to
 * copy-on-write per module. */
static void copy_kmsg(int kmsg)
{
	char rec[KMSG_RECORD_MAX];
	long r;

	while ((r = sys_read(kmsg, rec, sizeof(rec))) > 0 || r == -EPIPE)
		if (r > 0)
			sys_write(1, rec, r);
}

/* O_NOFOLLOW | O_CLOEXEC: as libmodprobe's Insmod() opens a module. */
static void load(const char *path, const char *params)
{
	int fd = sys_open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);

	result->open_failed = fd < 0;
	result->ret = fd < 0 ? fd : finit_module(fd, params,
						 compressed(fd) ? MODULE_INIT_COMPRESSED_FILE : 0);
}

/* False if the child is still running after ms. A pidfd polls readable once the process has
 * exited (pidfd_open(2), Linux 5.3); without pidfds, or if ppoll fails, there is no watchdog
 * and the caller just waits. */
static int exited_within(pid_t pid, unsigned long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };
	struct pollfd pfd = { .events = POLLIN };
	long r;

	pfd.fd = my_syscall2(__NR_pidfd_open, pid, 0);
	if (pfd.fd < 0)
		return 1;
	r = my_syscall5(__NR_ppoll, &pfd, 1, &ts, NULL, 0);
	sys_close(pfd.fd);
	return r != 0;
}

/* Loads in a child, so that an oops in finit_module() (panic_on_oops is off) kills only the
 * child, with SIGSEGV (make_task_dead() in arm64's die()), and a hanging init only blocks
 * the child. A timed-out child is left behind: its init may still return. */
static int run(const char *path, const char *params, unsigned long watchdog_ms,
	       const char **label, long *value)
{
	pid_t pid = sys_fork();
	int status = 0;

	if (pid == 0) {
		load(path, params);
		sys_exit(0);
	}
	if (pid < 0) {
		load(path, params);	/* no fork: an oops then ends this run */
	} else {
		if (watchdog_ms && !exited_within(pid, watchdog_ms)) {
			*label = "timeout";
			*value = 0;
			return TIMEOUT;
		}
		sys_wait4(pid, &status, 0, NULL);
		if (status & 0x7f) {	/* WTERMSIG */
			*label = "killed";
			*value = status & 0x7f;
			return KILLED;
		}
	}
	*label = result->open_failed ? "open" : "finit";
	*value = result->ret;
	return *value ? FAILED : LOADED;
}

/* The module's mark, or in quiet mode (MARK "") only what did not load. */
static void report(const char *mark, unsigned long line, const char *label, long value,
		   long usec, int status)
{
	char buf[512], *p = buf, *end = buf + sizeof(buf) - 1;	/* room for the newline */

	if (*mark) {
		p = put(p, end, mark, -1);
		p = put(p, end, ":M", -1);
		p = put_num(p, end, line);
		p = put(p, end, ":", -1);
		p = put(p, end, label, -1);
		p = put(p, end, ":", -1);
		p = put_num(p, end, value);
		p = put(p, end, ":", -1);
		p = put_num(p, end, usec);
	} else if (status != LOADED) {
		p = put(p, end, "restore failed: ", -1);
		p = put_num(p, end, line);
	} else {
		return;
	}
	*p++ = '\n';
	sys_write(1, buf, p - buf);
}

int main(int argc, char **argv)
{
	unsigned long from, to, watchdog_ms, line = 0;
	char *p, *end, *mark, *path, *params;
	int kmsg, nlines, status;
	const char *label;
	long value, start, usec;

	if (argc < 6)
		return 2;
	from = atou(argv[2]);
	to = atou(argv[3]);
	watchdog_ms = atou(argv[4]);
	mark = argv[5];
	nlines = argc - 6;
	p = read_plan(argv[1], &end);
	if (!p)
		return 2;
	kmsg = sys_open("/dev/kmsg", O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);	/* or do without */
	result = sys_mmap(NULL, sizeof(*result), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if ((unsigned long)result >= -4095UL)
		return 2;

	while (p < end) {
		path = p;
		params = NULL;
		for (; p < end && *p != '\n'; p++)
			if (*p == ' ' && !params) {
				*p = '\0';	/* the first space ends PATH */
				params = p + 1;
			}
		*p++ = '\0';		/* at the end: read_plan()'s extra byte */
		line++;
		if (!*path || line < from)
			continue;
		if (to && line > to)
			break;
		if (!listed(line, argv + 6, nlines))
			continue;

		if (kmsg >= 0)
			announce(kmsg, path);
		start = now_ns();
		status = run(path, params ? params : "", watchdog_ms, &label, &value);
		usec = (now_ns() - start) / 1000;
		if (*mark && kmsg >= 0)
			copy_kmsg(kmsg);
		report(mark, line, label, value, usec, status);
		if (status >= KILLED)
			return status;
	}
	return 0;
}
