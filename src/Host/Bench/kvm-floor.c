// KVM's own floor for the density guest's VM shape: only the ioctls, no VMM around them.
// `kvmactors bench density` compiles this with gcc at bench time and runs it in the same run as its own VMs.
//
//   ./kvm-floor [runs=20] [memory-first=0]
//
// Per run, timed: open /dev/kvm, KVM_CREATE_VM, KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR,
// KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, 64 KiB of guest RAM at 0 (KVM_SET_USER_MEMORY_REGION; with
// memory-first=1 before the irqchip), the guest's code at 0x1000, KVM_CREATE_VCPU, mmap of kvm_run,
// KVM_SET_CPUID2 (the host's supported table), KVM_SET_SREGS, KVM_SET_REGS, KVM_RUN to the guest's first exit
// (its OUT to 0x3f8) = "create". Then close every fd and mapping = "teardown" (closing an irqchip VM's fd sleeps
// in the kernel). Prints one line per run: "create_ms=X teardown_ms=Y".
#include <err.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    int memory_first = argc > 2 && atoi(argv[2]) != 0;
    // mov dx, 0x3f8 ; mov al, '.' ; out dx, al ; hlt ; jmp $-1   (the density guest)
    const uint8_t code[] = {0xba, 0xf8, 0x03, 0xb0, 0x2e, 0xee, 0xf4, 0xeb, 0xfd};
    const size_t ram = 64 * 1024;
    for (int r = 0; r < runs; r++) {
        double t0 = now_ms();
        int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0) err(1, "/dev/kvm");
        int vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm < 0) err(1, "KVM_CREATE_VM");
        if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) err(1, "KVM_SET_TSS_ADDR");
        uint64_t identity = 0xfffbc000UL;
        if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) err(1, "KVM_SET_IDENTITY_MAP_ADDR");
        uint8_t *mem = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) err(1, "mmap guest memory");
        struct kvm_userspace_memory_region region = {
            .slot = 0, .guest_phys_addr = 0, .memory_size = ram, .userspace_addr = (uint64_t)mem};
        if (memory_first && ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) err(1, "KVM_SET_USER_MEMORY_REGION");
        if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) err(1, "KVM_CREATE_IRQCHIP");
        struct kvm_pit_config pit = {.flags = 0};
        if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) err(1, "KVM_CREATE_PIT2");
        if (!memory_first && ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) err(1, "KVM_SET_USER_MEMORY_REGION");
        memcpy(mem + 0x1000, code, sizeof code);
        int fd = ioctl(vm, KVM_CREATE_VCPU, 0);
        if (fd < 0) err(1, "KVM_CREATE_VCPU");
        int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (run == MAP_FAILED) err(1, "mmap kvm_run");
        const int max = 256;
        struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + max * sizeof(struct kvm_cpuid_entry2));
        cpuid->nent = max;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) err(1, "KVM_GET_SUPPORTED_CPUID");
        if (ioctl(fd, KVM_SET_CPUID2, cpuid) < 0) err(1, "KVM_SET_CPUID2");
        struct kvm_sregs sregs;
        if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0) err(1, "KVM_GET_SREGS");
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0) err(1, "KVM_SET_SREGS");
        struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
        if (ioctl(fd, KVM_SET_REGS, &regs) < 0) err(1, "KVM_SET_REGS");
        if (ioctl(fd, KVM_RUN, 0) < 0) err(1, "KVM_RUN");
        if (run->exit_reason != KVM_EXIT_IO) errx(1, "unexpected exit_reason %u", run->exit_reason);
        double t1 = now_ms();
        munmap(run, run_size);
        close(fd);
        close(vm);
        munmap(mem, ram);
        close(kvm);
        double t2 = now_ms();
        free(cpuid);
        printf("create_ms=%.3f teardown_ms=%.3f\n", t1 - t0, t2 - t1);
        fflush(stdout);
    }
    return 0;
}
