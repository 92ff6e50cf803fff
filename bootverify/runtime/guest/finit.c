/*
 * finit: bootverify's in-guest module loader, run by the agent's init (see init, bv_run).
 *
 *   finit PLAN FROM ALONE WATCHDOG_MS MARK [LINE...]
 *
 * Walks PLAN's `PATH PARAMS` lines from FROM on (with LINEs, only those) and
 * loads each module with finit_module() in a child, exactly once, as Android's libmodprobe
 * does; a compressed file with MODULE_INIT_COMPRESSED_FILE, as kmod does. For each module it
 * prints the /dev/kmsg records the load wrote (`LEVEL,SEQ,USEC,FLAGS;TEXT`), then
 * `MARK:M<line>:<label>:<value>:<usec>`.
 * A line `&PATH PARAMS` is loaded at the same time as the line before it: such a wave
 * (libmodprobe's LoadModulesParallel) loads on all CPUs, one child per module, and prints
 * the records of the whole wave, then each module's mark in line order; lines up to ALONE
 * (0: none) load one at a time all the same: they are the rest of a wave whose guest died
 * while it loaded, and each is to get its own verdict. The labels:
 *   finit    finit_module() returned VALUE (0 or -errno)
 *   open     the file did not open (VALUE: -errno)
 *   killed   the child died in finit_module(), an oops (VALUE: the signal); exit status 3
 *   timeout  init had not returned after WATCHDOG_MS; exit status 4
 * and stops after killed or timeout (after the wave, in a wave). With MARK "" (restoring after
 * a reboot) it loads one module at a time and prints only `restore failed: <line>` for a
 * module that did not load. Exit status 2: bad usage or no plan.
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
#define WAVE_CPUS_MAX	64		/* children of a wave loading at once (pidfds polled) */

enum { LOADED, FAILED, KILLED = 3, TIMEOUT = 4 };	/* KILLED, TIMEOUT: the exit status */

/* Written by the child: its return value does not survive an exit status (see above).
 * One per plan line, shared with the children. */
static struct result {
	long ret;		/* finit_module()'s or openat()'s */
	long open_failed;
} *result;

/* A plan line, cut in place. */
struct plan_line {
	char *path;
	char *params;
	int joins;		/* `&PATH`: loaded at the same time as the line before it */
};

/* A module of a wave: its child and, once it is done, its mark's fields. */
struct job {
	pid_t pid;
	int pidfd;
	long start;		/* ns */
	long usec;
	const char *label;
	long value;
	int status;
};

/* nolibc 6.1 has no wrappers for these; the numbers are the asm-generic table's
 * (include/uapi/asm-generic/unistd.h, which arm64 uses): finit_module 273, pidfd_open 434,
 * ppoll 73 (the table has no poll), clock_gettime 113, fstat 80, sched_getaffinity 123. */
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

/* A record that the load left without a newline (a pr_err() without "\n") stays open, for a
 * pr_cont() to go on with, and /dev/kmsg readers only get finalized records: printk_ringbuffer's
 * prb_reserve() finalizes the last record when it makes the next one (kernel/printk/
 * printk_ringbuffer.c, 5.10 and later). So the load's window ends with a record of our own,
 * which the host drops (protocol.AGENT_RECORD); without it the open record went past the
 * next announce()'s seek, lost. */
static void end_window(int kmsg)
{
	static const char done[] = "<15>bootverify: loaded\n";

	sys_write(kmsg, done, sizeof(done) - 1);
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
static void load(const char *path, const char *params, struct result *r)
{
	int fd = sys_open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);

	r->open_failed = fd < 0;
	r->ret = fd < 0 ? fd : finit_module(fd, params,
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
		load(path, params, result);
		sys_exit(0);
	}
	if (pid < 0) {
		load(path, params, result);	/* no fork: an oops then ends this run */
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

/* std::thread::hardware_concurrency(), which first_stage_init gives LoadModulesParallel: the
 * CPUs this process may run on. */
static int online_cpus(void)
{
	unsigned long mask[16], m;	/* 1024 CPUs */
	long r = my_syscall3(__NR_sched_getaffinity, 0, sizeof(mask), mask);
	int n = 0, i;

	for (i = 0; r > 0 && i < r / (long)sizeof(mask[0]); i++)
		for (m = mask[i]; m; m &= m - 1)
			n++;
	return n ? n : 1;
}

/* A wave's job is done: its mark's fields from how the child ended. */
static void job_done(struct job *j, struct result *r, int wstatus)
{
	j->usec = (now_ns() - j->start) / 1000;
	if (wstatus & 0x7f) {	/* WTERMSIG */
		j->label = "killed";
		j->value = wstatus & 0x7f;
		j->status = KILLED;
		return;
	}
	j->label = r->open_failed ? "open" : "finit";
	j->value = r->ret;
	j->status = j->value ? FAILED : LOADED;
}

/* Fork the child that loads the wave's module; without a pidfd there is no watchdog: wait. */
static void job_start(struct job *j, const struct plan_line *l, struct result *r)
{
	int wstatus = 0;

	j->start = now_ns();
	j->pid = sys_fork();
	if (j->pid == 0) {
		load(l->path, l->params, r);
		sys_exit(0);
	}
	j->pidfd = j->pid < 0 ? -1 : my_syscall2(__NR_pidfd_open, j->pid, 0);
	if (j->pid < 0)
		load(l->path, l->params, r);	/* no fork: an oops then ends this run */
	else if (j->pidfd < 0)
		sys_wait4(j->pid, &wstatus, 0, NULL);
	if (j->pidfd < 0)
		job_done(j, r, wstatus);
}

/* Load plan lines FIRST..FIRST+COUNT-1 at once, at most one child per CPU, each with its own
 * watchdog; a timed-out child is left behind as in run(). Returns the worst status. */
static int run_wave(const struct plan_line *lines, long first, long count,
		    unsigned long watchdog_ms, struct job *jobs)
{
	struct pollfd pfd[WAVE_CPUS_MAX];
	struct timespec ts;
	long active[WAVE_CPUS_MAX], next = 0, left, wait_ns, now;
	int cpus = online_cpus(), nactive = 0, worst = LOADED, i, wstatus;

	if (cpus > WAVE_CPUS_MAX)
		cpus = WAVE_CPUS_MAX;
	while (next < count || nactive) {
		while (nactive < cpus && next < count) {
			job_start(&jobs[next], &lines[first + next], &result[first + next]);
			if (jobs[next].pidfd >= 0)
				active[nactive++] = next;
			next++;
		}
		if (!nactive)
			continue;
		wait_ns = -1;
		now = now_ns();
		for (i = 0; i < nactive; i++) {
			pfd[i].fd = jobs[active[i]].pidfd;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
			left = jobs[active[i]].start + (long)watchdog_ms * 1000000 - now;
			if (watchdog_ms && (wait_ns < 0 || left < wait_ns))
				wait_ns = left > 0 ? left : 0;
		}
		ts.tv_sec = wait_ns / 1000000000;
		ts.tv_nsec = wait_ns % 1000000000;
		my_syscall5(__NR_ppoll, pfd, nactive, wait_ns < 0 ? NULL : &ts, NULL, 0);
		now = now_ns();
		for (i = nactive - 1; i >= 0; i--) {
			struct job *j = &jobs[active[i]];

			if (pfd[i].revents) {
				wstatus = 0;
				sys_wait4(j->pid, &wstatus, 0, NULL);
				job_done(j, &result[first + active[i]], wstatus);
			} else if (watchdog_ms && now - j->start >= (long)watchdog_ms * 1000000) {
				j->usec = (now - j->start) / 1000;
				j->label = "timeout";
				j->value = 0;
				j->status = TIMEOUT;
			} else {
				continue;
			}
			sys_close(j->pidfd);
			active[i] = active[--nactive];
		}
	}
	for (i = 0; i < count; i++)
		if (jobs[i].status > worst)
			worst = jobs[i].status;
	return worst;
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

/* The plan's lines, cut in place; *count of them. */
static struct plan_line *parse_plan(char *p, char *end, long *count)
{
	struct plan_line *lines;
	long n = 1, i = 0;
	char *q;

	for (q = p; q < end; q++)
		n += *q == '\n';
	lines = sys_mmap(NULL, n * sizeof(*lines), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((unsigned long)lines >= -4095UL)
		return NULL;
	while (p < end) {
		struct plan_line *l = &lines[i++];

		l->joins = *p == '&';
		l->path = p + l->joins;
		l->params = NULL;
		for (; p < end && *p != '\n'; p++)
			if (*p == ' ' && !l->params) {
				*p = '\0';	/* the first space ends PATH */
				l->params = p + 1;
			}
		*p++ = '\0';		/* at the end: read_plan()'s extra byte */
		if (!l->params)
			l->params = "";
	}
	*count = i;
	return lines;
}

/* Memory shared with the children (MAP_SHARED) or private, never freed. */
static void *map(long size, int shared)
{
	void *m = sys_mmap(NULL, size, PROT_READ | PROT_WRITE,
			   (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);

	return (unsigned long)m >= -4095UL ? NULL : m;
}

int main(int argc, char **argv)
{
	unsigned long from, alone, watchdog_ms;
	struct plan_line *lines;
	struct job *jobs;
	char *p, *end, *mark;
	int kmsg, nlines, status;
	const char *label;
	long i, k, n, count, value, start, usec;

	if (argc < 6)
		return 2;
	from = atou(argv[2]);
	alone = atou(argv[3]);
	watchdog_ms = atou(argv[4]);
	mark = argv[5];
	nlines = argc - 6;
	p = read_plan(argv[1], &end);
	if (!p)
		return 2;
	lines = parse_plan(p, end, &count);
	if (!lines)
		return 2;
	result = map(count * sizeof(*result) + 1, 1);
	jobs = map(count * sizeof(*jobs) + 1, 0);
	if (!result || !jobs)
		return 2;
	kmsg = sys_open("/dev/kmsg", O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);	/* or do without */

	for (i = from ? from - 1 : 0; i < count; i += n) {
		/* a wave: this line and the `&` lines after it, in a run (not when quiet), past
		 * ALONE (i is line i + 1) */
		for (n = 1; *mark && i >= (long)alone && i + n < count && lines[i + n].joins; n++)
			;
		if (n > 1) {
			for (k = 0; kmsg >= 0 && k < n; k++)
				announce(kmsg, lines[i + k].path);
			status = run_wave(lines, i, n, watchdog_ms, jobs);
			if (kmsg >= 0) {
				end_window(kmsg);
				copy_kmsg(kmsg);
			}
			for (k = 0; k < n; k++)
				report(mark, i + k + 1, jobs[k].label, jobs[k].value, jobs[k].usec,
				       jobs[k].status);
			if (status >= KILLED)
				return status;
			continue;
		}
		if (!*lines[i].path || !listed(i + 1, argv + 6, nlines))
			continue;
		if (kmsg >= 0)
			announce(kmsg, lines[i].path);
		start = now_ns();
		status = run(lines[i].path, lines[i].params, watchdog_ms, &label, &value);
		usec = (now_ns() - start) / 1000;
		if (*mark && kmsg >= 0) {
			end_window(kmsg);
			copy_kmsg(kmsg);
		}
		report(mark, i + 1, label, value, usec, status);
		if (status >= KILLED)
			return status;
	}
	return 0;
}
