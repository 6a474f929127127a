// SPDX-License-Identifier: GPL-2.0
/*
 * mh_hotplug: drive the memory hotplug API from debugfs, the way an out-of-tree driver would.
 *
 * Nothing in-tree adds memory in one granularity and removes it in another (virtio-mem and
 * dax/kmem add and remove whole blocks), so the arm64 partial hot-remove bug of seed 002 needs a
 * driver that does.  Each file takes "START SIZE" (memparse syntax: 0x80000000 1G):
 *
 *   add_memory                 add_memory(nid 0, START, SIZE, MHP_NONE)
 *   offline_and_remove_memory  offline_and_remove_memory(START, SIZE)
 *   remove_memory              remove_memory(START, SIZE)      (blocks must be offline)
 *   touch                      read one byte of every page through the linear map
 *
 * A write returns the kernel's error code, so `echo ... > file` fails the way the call did.
 */
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/memory_hotplug.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/uaccess.h>

static struct dentry *mh_dir;

static int mh_parse(const char __user *ubuf, size_t count, u64 *start, u64 *size)
{
	char buf[64];
	char *p = buf;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	*start = memparse(p, &p);
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p)
		return -EINVAL;
	*size = memparse(p, &p);
	if (!*size || (*start | *size) & ~PAGE_MASK)
		return -EINVAL;
	return 0;
}

static int mh_add(u64 start, u64 size)
{
	return add_memory(0, start, size, MHP_NONE);
}

static int mh_offline_and_remove(u64 start, u64 size)
{
	return offline_and_remove_memory(start, size);
}

static int mh_remove(u64 start, u64 size)
{
	return remove_memory(start, size);
}

static int mh_touch(u64 start, u64 size)
{
	unsigned long sum = 0;
	u64 pa;

	for (pa = start; pa < start + size; pa += PAGE_SIZE) {
		if (!pfn_valid(PHYS_PFN(pa)))
			return -EFAULT;
		sum += READ_ONCE(*(u8 *)phys_to_virt(pa));
		cond_resched();
	}
	pr_info("mh_hotplug: touched %llu pages at %#llx (sum %lu)\n", size >> PAGE_SHIFT, start,
		sum);
	return 0;
}

#define MH_OP(name, fn)                                                                      \
	static ssize_t name##_write(struct file *f, const char __user *ubuf, size_t count,   \
				    loff_t *ppos)                                             \
	{                                                                                     \
		u64 start, size;                                                              \
		int ret = mh_parse(ubuf, count, &start, &size);                              \
		if (!ret)                                                                     \
			ret = fn(start, size);                                                \
		pr_info("mh_hotplug: " #name " %#llx %#llx: %d\n", start, size, ret);       \
		return ret ? ret : count;                                                     \
	}                                                                                     \
	static const struct file_operations name##_fops = {                                   \
		.owner = THIS_MODULE,                                                         \
		.write = name##_write,                                                        \
	}

MH_OP(add_memory, mh_add);
MH_OP(offline_and_remove_memory, mh_offline_and_remove);
MH_OP(remove_memory, mh_remove);
MH_OP(touch, mh_touch);

static int __init mh_init(void)
{
	mh_dir = debugfs_create_dir("mh_hotplug", NULL);
	debugfs_create_file("add_memory", 0200, mh_dir, NULL, &add_memory_fops);
	debugfs_create_file("offline_and_remove_memory", 0200, mh_dir, NULL,
			    &offline_and_remove_memory_fops);
	debugfs_create_file("remove_memory", 0200, mh_dir, NULL, &remove_memory_fops);
	debugfs_create_file("touch", 0200, mh_dir, NULL, &touch_fops);
	return 0;
}

static void __exit mh_exit(void)
{
	debugfs_remove_recursive(mh_dir);
}

module_init(mh_init);
module_exit(mh_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("memharness: memory hotplug API over debugfs (test module)");
