using System.Buffers.Binary;
using System.Text;

namespace KvmActors.Gdb;

/// <summary>
/// A vCPU's registers as the stub sees them, independent of KVM's structs. Segment registers are
/// the selectors only (gdb shows selectors; bases other than fs/gs are not in its model).
/// </summary>
public sealed record X86RegisterFile
{
    public ulong Rax { get; init; }
    public ulong Rbx { get; init; }
    public ulong Rcx { get; init; }
    public ulong Rdx { get; init; }
    public ulong Rsi { get; init; }
    public ulong Rdi { get; init; }
    public ulong Rbp { get; init; }
    public ulong Rsp { get; init; }
    public ulong R8 { get; init; }
    public ulong R9 { get; init; }
    public ulong R10 { get; init; }
    public ulong R11 { get; init; }
    public ulong R12 { get; init; }
    public ulong R13 { get; init; }
    public ulong R14 { get; init; }
    public ulong R15 { get; init; }
    public ulong Rip { get; init; }
    public ulong Rflags { get; init; }
    public ushort Cs { get; init; }
    public ushort Ss { get; init; }
    public ushort Ds { get; init; }
    public ushort Es { get; init; }
    public ushort Fs { get; init; }
    public ushort Gs { get; init; }
    public ulong FsBase { get; init; }
    public ulong GsBase { get; init; }
    public ulong Cr0 { get; init; }
    public ulong Cr2 { get; init; }
    public ulong Cr3 { get; init; }
    public ulong Cr4 { get; init; }
    public ulong Cr8 { get; init; }
    public ulong Efer { get; init; }
}

/// <summary>
/// The register view a gdb session uses. It is fixed for a connection because gdb reads the
/// target description once; a guest that switches modes should be debugged with the widest
/// layout it will reach (Long64 shows 32-bit state correctly, with upper halves zero).
/// </summary>
public enum X86Mode
{
    /// <summary>
    /// Real mode. gdb has no 16-bit register set: its "i8086" architecture is the i386 one with
    /// 16-bit disassembly, so the layout is Protected32's and only the architecture name differs.
    /// gdb does not add CS*16: addresses it shows and sends are offsets, which equal linear
    /// addresses only while the segment bases are 0.
    /// </summary>
    Real16,
    Protected32,
    Long64,
}

/// <summary>One register in the description and in the g packet.</summary>
/// <param name="Get">Null for registers we describe but do not hold (x87): sent as "xx" (unavailable).</param>
public sealed record X86RegisterSlot(
    string Name, int Bits, string Type, string Feature, string? Group,
    Func<X86RegisterFile, ulong>? Get, Func<X86RegisterFile, ulong, X86RegisterFile>? Set)
{
    public int Bytes => Bits / 8;
}

/// <summary>
/// The g-packet layout and target description for one <see cref="X86Mode"/>, generated from one
/// list of slots so the XML and the packet can never disagree.
/// </summary>
/// <remarks>
/// gdb's i386 and amd64 architectures require the "org.gnu.gdb.i386.core" feature to hold the
/// general registers, eflags, the six selectors and the x87 registers (st0-7, fctrl..fop); they
/// refuse a description without them. The runtime does not read FPU state, so those are served as
/// unavailable. SSE is optional for gdb and left out. fs_base/gs_base form the optional
/// "org.gnu.gdb.i386.segments" feature, and the control registers a feature of our own, which
/// gdb shows under "info registers system" (cr8 is 64-bit only).
/// </remarks>
public sealed class X86RegisterLayout
{
    public const string CoreFeature = "org.gnu.gdb.i386.core";
    public const string SegmentsFeature = "org.gnu.gdb.i386.segments";
    public const string SystemFeature = "org.kvmactors.x86.system";

    public X86Mode Mode { get; }
    public IReadOnlyList<X86RegisterSlot> Registers { get; }
    /// <summary>The BFD architecture name gdb selects from the description.</summary>
    public string Architecture { get; }
    public int GPacketBytes { get; }
    public int PcRegister { get; }

    private X86RegisterLayout(X86Mode mode)
    {
        Mode = mode;
        var wide = mode == X86Mode.Long64;
        Architecture = mode switch { X86Mode.Real16 => "i8086", X86Mode.Protected32 => "i386", _ => "i386:x86-64" };
        var slots = new List<X86RegisterSlot>();
        void Add(string name, int bits, string type, Func<X86RegisterFile, ulong> get, Func<X86RegisterFile, ulong, X86RegisterFile> set,
            string feature = CoreFeature, string? group = null) =>
            slots.Add(new X86RegisterSlot(name, bits, type, feature, group, get, set));

        if (wide)
        {
            // amd64's order (gdb's 64bit-core.xml), which is not the i386 encoding order.
            Add("rax", 64, "int64", r => r.Rax, (r, v) => r with { Rax = v });
            Add("rbx", 64, "int64", r => r.Rbx, (r, v) => r with { Rbx = v });
            Add("rcx", 64, "int64", r => r.Rcx, (r, v) => r with { Rcx = v });
            Add("rdx", 64, "int64", r => r.Rdx, (r, v) => r with { Rdx = v });
            Add("rsi", 64, "int64", r => r.Rsi, (r, v) => r with { Rsi = v });
            Add("rdi", 64, "int64", r => r.Rdi, (r, v) => r with { Rdi = v });
            Add("rbp", 64, "data_ptr", r => r.Rbp, (r, v) => r with { Rbp = v });
            Add("rsp", 64, "data_ptr", r => r.Rsp, (r, v) => r with { Rsp = v });
            Add("r8", 64, "int64", r => r.R8, (r, v) => r with { R8 = v });
            Add("r9", 64, "int64", r => r.R9, (r, v) => r with { R9 = v });
            Add("r10", 64, "int64", r => r.R10, (r, v) => r with { R10 = v });
            Add("r11", 64, "int64", r => r.R11, (r, v) => r with { R11 = v });
            Add("r12", 64, "int64", r => r.R12, (r, v) => r with { R12 = v });
            Add("r13", 64, "int64", r => r.R13, (r, v) => r with { R13 = v });
            Add("r14", 64, "int64", r => r.R14, (r, v) => r with { R14 = v });
            Add("r15", 64, "int64", r => r.R15, (r, v) => r with { R15 = v });
            Add("rip", 64, "code_ptr", r => r.Rip, (r, v) => r with { Rip = v });
        }
        else
        {
            // Writing a 32-bit register keeps the upper half, as the 64-bit value is the real state.
            Add("eax", 32, "int32", r => r.Rax, (r, v) => r with { Rax = Low(r.Rax, v) });
            Add("ecx", 32, "int32", r => r.Rcx, (r, v) => r with { Rcx = Low(r.Rcx, v) });
            Add("edx", 32, "int32", r => r.Rdx, (r, v) => r with { Rdx = Low(r.Rdx, v) });
            Add("ebx", 32, "int32", r => r.Rbx, (r, v) => r with { Rbx = Low(r.Rbx, v) });
            Add("esp", 32, "data_ptr", r => r.Rsp, (r, v) => r with { Rsp = Low(r.Rsp, v) });
            Add("ebp", 32, "data_ptr", r => r.Rbp, (r, v) => r with { Rbp = Low(r.Rbp, v) });
            Add("esi", 32, "int32", r => r.Rsi, (r, v) => r with { Rsi = Low(r.Rsi, v) });
            Add("edi", 32, "int32", r => r.Rdi, (r, v) => r with { Rdi = Low(r.Rdi, v) });
            Add("eip", 32, "code_ptr", r => r.Rip, (r, v) => r with { Rip = Low(r.Rip, v) });
        }
        Add("eflags", 32, "i386_eflags", r => r.Rflags, (r, v) => r with { Rflags = Low(r.Rflags, v) });
        Add("cs", 32, "int32", r => r.Cs, (r, v) => r with { Cs = (ushort)v });
        Add("ss", 32, "int32", r => r.Ss, (r, v) => r with { Ss = (ushort)v });
        Add("ds", 32, "int32", r => r.Ds, (r, v) => r with { Ds = (ushort)v });
        Add("es", 32, "int32", r => r.Es, (r, v) => r with { Es = (ushort)v });
        Add("fs", 32, "int32", r => r.Fs, (r, v) => r with { Fs = (ushort)v });
        Add("gs", 32, "int32", r => r.Gs, (r, v) => r with { Gs = (ushort)v });
        for (var i = 0; i < 8; i++)
            slots.Add(new X86RegisterSlot($"st{i}", 80, "i387_ext", CoreFeature, null, null, null));
        foreach (var name in new[] { "fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop" })
            slots.Add(new X86RegisterSlot(name, 32, "int", CoreFeature, "float", null, null));

        var baseBits = wide ? 64 : 32;
        var baseType = wide ? "int64" : "int32";
        Add("fs_base", baseBits, baseType, r => r.FsBase, (r, v) => r with { FsBase = Sized(r.FsBase, v, baseBits) }, SegmentsFeature);
        Add("gs_base", baseBits, baseType, r => r.GsBase, (r, v) => r with { GsBase = Sized(r.GsBase, v, baseBits) }, SegmentsFeature);

        var crType = wide ? "uint64" : "uint32"; // bit masks: unsigned, so cr0 with PG set prints positive
        Add("cr0", baseBits, crType, r => r.Cr0, (r, v) => r with { Cr0 = Sized(r.Cr0, v, baseBits) }, SystemFeature, "system");
        Add("cr2", baseBits, crType, r => r.Cr2, (r, v) => r with { Cr2 = Sized(r.Cr2, v, baseBits) }, SystemFeature, "system");
        Add("cr3", baseBits, crType, r => r.Cr3, (r, v) => r with { Cr3 = Sized(r.Cr3, v, baseBits) }, SystemFeature, "system");
        Add("cr4", baseBits, crType, r => r.Cr4, (r, v) => r with { Cr4 = Sized(r.Cr4, v, baseBits) }, SystemFeature, "system");
        if (wide) Add("cr8", 64, "uint64", r => r.Cr8, (r, v) => r with { Cr8 = v }, SystemFeature, "system");
        // EFER is a 64-bit MSR in every mode.
        Add("efer", 64, "uint64", r => r.Efer, (r, v) => r with { Efer = v }, SystemFeature, "system");

        Registers = slots;
        GPacketBytes = slots.Sum(s => s.Bytes);
        PcRegister = slots.FindIndex(s => s.Name is "rip" or "eip");
        TargetXml = BuildXml();
        TargetXmlBytes = Encoding.UTF8.GetBytes(TargetXml);
    }

    private static readonly X86RegisterLayout Real = new(X86Mode.Real16);
    private static readonly X86RegisterLayout Protected = new(X86Mode.Protected32);
    private static readonly X86RegisterLayout Long = new(X86Mode.Long64);

    public static X86RegisterLayout For(X86Mode mode) => mode switch
    {
        X86Mode.Real16 => Real,
        X86Mode.Protected32 => Protected,
        X86Mode.Long64 => Long,
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    public string TargetXml { get; }
    public byte[] TargetXmlBytes { get; }

    /// <summary>The g reply: every slot in order, little-endian hex, "xx" per byte of an unavailable one.</summary>
    public string SerializeG(X86RegisterFile regs)
    {
        var sb = new StringBuilder(GPacketBytes * 2);
        foreach (var slot in Registers) AppendRegister(sb, slot, regs);
        return sb.ToString();
    }

    /// <summary>Applies a G packet's bytes to <paramref name="current"/>. Extra bytes are refused;
    /// fewer are allowed (gdb may send only the registers up to the last one it knows).</summary>
    public X86RegisterFile? ParseG(ReadOnlySpan<byte> data, X86RegisterFile current)
    {
        if (data.Length > GPacketBytes) return null;
        var offset = 0;
        foreach (var slot in Registers)
        {
            if (offset + slot.Bytes > data.Length) break;
            if (slot.Set is not null) current = slot.Set(current, ReadLe(data.Slice(offset, slot.Bytes)));
            offset += slot.Bytes;
        }
        return current;
    }

    /// <summary>The p reply for register <paramref name="number"/>, or null if there is no such register.</summary>
    public string? ReadRegister(int number, X86RegisterFile regs)
    {
        if (number < 0 || number >= Registers.Count) return null;
        var sb = new StringBuilder();
        AppendRegister(sb, Registers[number], regs);
        return sb.ToString();
    }

    /// <summary>P: null if the number is unknown or the size wrong. Writes to unavailable registers are dropped.</summary>
    public X86RegisterFile? WriteRegister(int number, ReadOnlySpan<byte> value, X86RegisterFile current)
    {
        if (number < 0 || number >= Registers.Count) return null;
        var slot = Registers[number];
        if (value.Length != slot.Bytes) return null;
        return slot.Set is null ? current : slot.Set(current, ReadLe(value));
    }

    private static void AppendRegister(StringBuilder sb, X86RegisterSlot slot, X86RegisterFile regs)
    {
        if (slot.Get is null)
        {
            sb.Append('x', slot.Bytes * 2);
            return;
        }
        Span<byte> buf = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(buf, slot.Get(regs));
        sb.Append(Hex.Encode(buf[..slot.Bytes]));
    }

    private static ulong ReadLe(ReadOnlySpan<byte> bytes)
    {
        Span<byte> buf = stackalloc byte[8];
        buf.Clear();
        bytes[..Math.Min(8, bytes.Length)].CopyTo(buf);
        return BinaryPrimitives.ReadUInt64LittleEndian(buf);
    }

    private static ulong Low(ulong old, ulong v) => (old & 0xffff_ffff_0000_0000UL) | (v & 0xffff_ffffUL);
    private static ulong Sized(ulong old, ulong v, int bits) => bits == 64 ? v : Low(old, v);

    private string BuildXml()
    {
        var sb = new StringBuilder();
        sb.Append("<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n<target version=\"1.0\">\n");
        sb.Append($"  <architecture>{Architecture}</architecture>\n");
        // A VM has no operating system ABI for gdb to assume (it would default to GNU/Linux).
        sb.Append("  <osabi>none</osabi>\n");
        string? open = null;
        var regnum = 0;
        foreach (var slot in Registers)
        {
            if (slot.Feature != open)
            {
                if (open is not null) sb.Append("  </feature>\n");
                sb.Append($"  <feature name=\"{slot.Feature}\">\n");
                if (slot.Feature == CoreFeature) sb.Append(EflagsType);
                open = slot.Feature;
            }
            var group = slot.Group is null ? "" : $" group=\"{slot.Group}\"";
            sb.Append($"    <reg name=\"{slot.Name}\" bitsize=\"{slot.Bits}\" type=\"{slot.Type}\" regnum=\"{regnum}\"{group}/>\n");
            regnum++;
        }
        sb.Append("  </feature>\n</target>\n");
        return sb.ToString();
    }

    // The eflags flag names gdb prints ("[ ZF IF ]"); it wants the type defined in the feature.
    private const string EflagsType =
        "    <flags id=\"i386_eflags\" size=\"4\">\n" +
        "      <field name=\"CF\" start=\"0\" end=\"0\"/>\n      <field name=\"\" start=\"1\" end=\"1\"/>\n" +
        "      <field name=\"PF\" start=\"2\" end=\"2\"/>\n      <field name=\"AF\" start=\"4\" end=\"4\"/>\n" +
        "      <field name=\"ZF\" start=\"6\" end=\"6\"/>\n      <field name=\"SF\" start=\"7\" end=\"7\"/>\n" +
        "      <field name=\"TF\" start=\"8\" end=\"8\"/>\n      <field name=\"IF\" start=\"9\" end=\"9\"/>\n" +
        "      <field name=\"DF\" start=\"10\" end=\"10\"/>\n      <field name=\"OF\" start=\"11\" end=\"11\"/>\n" +
        "      <field name=\"NT\" start=\"14\" end=\"14\"/>\n      <field name=\"RF\" start=\"16\" end=\"16\"/>\n" +
        "      <field name=\"VM\" start=\"17\" end=\"17\"/>\n      <field name=\"AC\" start=\"18\" end=\"18\"/>\n" +
        "      <field name=\"VIF\" start=\"19\" end=\"19\"/>\n      <field name=\"VIP\" start=\"20\" end=\"20\"/>\n" +
        "      <field name=\"ID\" start=\"21\" end=\"21\"/>\n" +
        "    </flags>\n";
}
