using KvmActors.Devices.IntelIommu;
using KvmActors.Sdk;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>The Intel VT-d model: registers, second-level page walks, faults, interrupt remapping and queued invalidation.</summary>
public sealed class VtdModelTests
{
    private const ulong Root = 0x1000, Context = 0x2000, Pml4 = 0x3000, L3 = 0x4000, L2 = 0x5000, L1 = 0x6000, Irt = 0x8000, Queue = 0x9000;
    private const ushort Sid = 0x0010; // 00:02.0
    private readonly FakePhysicalMemory _mem = new(0x80_0000);
    private readonly List<MsiMessage> _events = new();
    private readonly VtdModel _vtd;

    public VtdModelTests() => _vtd = new VtdModel(_mem, _events.Add);

    private void Gcmd(uint bit) => _vtd.Write(0x18, 4, (_vtd.Read(0x1c, 4) & ~(VtdModel.Srtp | VtdModel.Sirtp)) | bit);

    /// <summary>Root entry for bus 0 → context table; context entry for <see cref="Sid"/>: levels (3 or 4), FPD.</summary>
    private void Context_(int levels, bool fpd = false, ulong tableRoot = 0)
    {
        _mem.Q(Root, Context | 1);
        var lo = (tableRoot == 0 ? (levels == 4 ? Pml4 : L3) : tableRoot) | 1 | (fpd ? 2UL : 0);
        _mem.Q(Context + (Sid & 0xff) * 16UL, lo);
        _mem.Q(Context + (Sid & 0xff) * 16UL + 8, levels == 4 ? 2UL : 1UL | (ulong)Sid << 8);
        _vtd.Write(0x20, 8, Root);
        Gcmd(VtdModel.Srtp);
        Gcmd(VtdModel.Te);
    }

    [Fact]
    public void Version_and_capabilities_say_what_is_built_and_commands_show_in_the_status_register()
    {
        Assert.Equal(0x10ul, _vtd.Read(0, 4));
        var cap = _vtd.Read(8, 8);
        Assert.Equal(0x6ul, (cap >> 8) & 0x1f);             // SAGAW: 39 and 48 bits
        Assert.Equal(0x3ul, (cap >> 34) & 0xf);             // 2M and 1G pages
        Assert.Equal(0x220ul, ((cap >> 24) & 0x3ff) * 16);  // fault record
        var ecap = _vtd.Read(0x10, 8);
        Assert.NotEqual(0ul, ecap & VtdModel.EcapQi);
        Assert.NotEqual(0ul, ecap & VtdModel.EcapIr);
        Assert.Equal(0ul, ecap & 0x10);                     // no EIM
        Assert.Equal(0ul, _vtd.Read(0x1c, 4));
        foreach (var bit in new[] { VtdModel.Qie, VtdModel.Srtp, VtdModel.Sirtp, VtdModel.Te, VtdModel.Ire })
        {
            Gcmd(bit);
            Assert.NotEqual(0ul, _vtd.Read(0x1c, 4) & bit);
        }
        Assert.Equal(0ul, _vtd.Read(0x18, 4)); // GCMD reads 0
        _vtd.Write(0x18, 4, 0); // TE, QIE, IRE off again; the latched pointers' status stays
        Assert.Equal((ulong)(VtdModel.Srtp | VtdModel.Sirtp), _vtd.Read(0x1c, 4));
    }

    [Fact]
    public void Without_translation_enabled_dma_addresses_pass_through()
    {
        Assert.Equal(new DmaTranslation(0x12345, 0x1000 - 0x345), _vtd.TranslateDma(Sid, 0x12345, write: true));
    }

    [Fact]
    public void A_three_level_walk_translates_a_4k_page_and_checks_read_and_write_rights()
    {
        Context_(3);
        _mem.Q(L3, L2 | 3);
        _mem.Q(L2, L1 | 3);
        _mem.Q(L1 + 5 * 8, 0x70000 | 1); // IOVA 0x5000 → 0x70000, read-only
        Assert.Equal(new DmaTranslation(0x70123, 0x1000 - 0x123), _vtd.TranslateDma(Sid, 0x5123, write: false));
        Assert.Null(_vtd.TranslateDma(Sid, 0x5123, write: true));
        var (lo, hi) = _vtd.FaultRecord;
        Assert.Equal(0x5000ul, lo);
        Assert.Equal(Sid, (ushort)hi);
        Assert.Equal((byte)VtdFault.WriteNotAllowed, (byte)(hi >> 32));
        Assert.Equal(0ul, (hi >> 62) & 1);                   // T = 0: a write
        Assert.NotEqual(0ul, hi >> 63);                      // F
        Assert.Equal(VtdModel.Ppf, _vtd.FaultStatus & VtdModel.Ppf);
        Assert.Null(_vtd.TranslateDma(Sid, 0x6000, write: false)); // not mapped, while a fault is pending: overflow
        Assert.NotEqual(0u, _vtd.FaultStatus & VtdModel.Pfo);
        _vtd.Write(0x228, 8, 1UL << 63);                     // F is write-1-to-clear
        _vtd.Write(0x34, 4, VtdModel.Pfo);
        Assert.Equal(0u, _vtd.FaultStatus);
        Assert.Null(_vtd.TranslateDma(Sid, 1UL << 39, write: false)); // beyond the 39-bit width
        Assert.Equal((byte)VtdFault.AddressBeyondWidth, (byte)(_vtd.FaultRecord.High >> 32));
    }

    [Fact]
    public void A_four_level_walk_takes_1g_and_2m_pages()
    {
        Context_(4);
        _mem.Q(Pml4 + 1 * 8, L3 | 3);                       // 512 GiB slot 1
        _mem.Q(L3 + 2 * 8, 0x4000_0000UL | 0x80 | 3);        // 1 GiB page at IOVA 0x80_8000_0000
        _mem.Q(L3 + 3 * 8, L2 | 3);
        _mem.Q(L2 + 4 * 8, 0x0060_0000UL | 0x80 | 3);        // 2 MiB page at IOVA 0x80_c080_0000
        Assert.Equal(new DmaTranslation(0x4012_3456, 0x4000_0000 - 0x12_3456), _vtd.TranslateDma(Sid, 0x80_8012_3456, write: true));
        Assert.Equal(new DmaTranslation(0x0061_2345, 0x20_0000 - 0x1_2345), _vtd.TranslateDma(Sid, 0x80_c081_2345, write: false));
        Assert.Equal(0u, _vtd.FaultStatus);
    }

    [Fact]
    public void A_missing_root_entry_faults_and_fault_processing_disabled_records_nothing()
    {
        _vtd.Write(0x20, 8, Root);
        Gcmd(VtdModel.Srtp);
        Gcmd(VtdModel.Te);
        _vtd.Write(0x38, 4, 0); // unmask the fault event
        Assert.Null(_vtd.TranslateDma(Sid, 0, write: false));
        Assert.Equal((byte)VtdFault.RootNotPresent, (byte)(_vtd.FaultRecord.High >> 32));
        Assert.Single(_events);
        _vtd.Write(0x228, 8, 1UL << 63);
        Context_(3, fpd: true); // present context with FPD, nothing mapped
        Assert.Null(_vtd.TranslateDma(Sid, 0, write: false));
        Assert.Equal(0u, _vtd.FaultStatus);
        Assert.Single(_events);
    }

    private void Irte(int index, byte vector, byte dest, bool level = false, ushort sid = Sid, bool present = true)
    {
        var lo = (present ? 1UL : 0) | (level ? 0x10UL : 0) | (ulong)vector << 16 | (ulong)dest << 40;
        _mem.Q(Irt + (ulong)index * 16, lo);
        _mem.Q(Irt + (ulong)index * 16 + 8, sid | 1UL << 18); // SVT 1, SQ 0: the whole SID
    }

    private void EnableIr(bool cfi = false)
    {
        _vtd.Write(0xb8, 8, Irt | 7); // 256 entries
        Gcmd(VtdModel.Sirtp);
        Gcmd(VtdModel.Ire);
        if (cfi) Gcmd(VtdModel.Cfi);
    }

    [Fact]
    public void A_remappable_msi_takes_vector_destination_and_trigger_from_its_irte()
    {
        EnableIr();
        Irte(2, 0xee, dest: 3);
        Irte(3, 0x41, dest: 1, level: true);
        // kvm-unit-tests' vtd_setup_msi for index 2: address 0xfee00050 (format bit 4, handle 2 in 19:5), data 0.
        Assert.Equal(new MsiMessage(0xfee0_3000, 0xee), _vtd.RemapInterrupt(Sid, new MsiMessage(0xfee0_0050, 0)));
        // SHV: handle 2 + subhandle 1 = IRTE 3.
        Assert.Equal(new MsiMessage(0xfee0_1000, 0x41 | 0xc000), _vtd.RemapInterrupt(Sid, new MsiMessage(0xfee0_0058, 1)));
        // The IOAPIC's requests carry no source ID to verify.
        Assert.Equal(new MsiMessage(0xfee0_3000, 0xee), _vtd.RemapInterrupt(null, new MsiMessage(0xfee0_0050, 0)));
        Assert.Equal(0u, _vtd.FaultStatus);
    }

    [Theory]
    [InlineData(0x0018, 0x050u, VtdFault.SourceIdMismatch)]     // another device using the IRTE
    [InlineData(0x0010, 0x090u, VtdFault.IrteNotPresent)]       // IRTE 4 not present
    [InlineData(0x0010, 0x2_0010u, VtdFault.InterruptIndexBeyondTable)] // handle 0x1000 past 256 entries
    [InlineData(0x0010, 0x000u, VtdFault.CompatibilityBlocked)] // compatibility format without CFI
    public void A_blocked_interrupt_records_its_reason_and_index(ushort sid, uint addressLow, VtdFault reason)
    {
        EnableIr();
        Irte(2, 0xee, 0);
        Irte(4, 0xee, 0, present: false);
        Assert.Null(_vtd.RemapInterrupt(sid, new MsiMessage(0xfee0_0000 | addressLow, 0)));
        var (lo, hi) = _vtd.FaultRecord;
        Assert.Equal((byte)reason, (byte)(hi >> 32));
        if (reason != VtdFault.CompatibilityBlocked) Assert.Equal((addressLow >> 5) & 0x7fff, (uint)(lo >> 48));
    }

    [Fact]
    public void Compatibility_format_passes_with_cfi_and_everything_passes_without_ire()
    {
        var compat = new MsiMessage(0xfee0_1000, 0x30);
        Assert.Equal(compat, _vtd.RemapInterrupt(Sid, compat));
        EnableIr(cfi: true);
        Assert.Equal(compat, _vtd.RemapInterrupt(Sid, compat));
    }

    [Fact]
    public void The_invalidation_queue_consumes_descriptors_writes_wait_status_and_stops_at_a_bad_one()
    {
        _vtd.Write(0x90, 8, Queue);   // one page: 256 descriptors
        Gcmd(VtdModel.Qie);
        _mem.Q(Queue + 0x00, 0x1 | 1UL << 4);        // context-cache, global
        _mem.Q(Queue + 0x10, 0x2 | 1UL << 4);        // IOTLB, global
        _mem.Q(Queue + 0x20, 0x4);                   // interrupt entry cache
        _mem.Q(Queue + 0x30, 0x5 | 0x20 | 0x10 | 0xabcdUL << 32); // wait: status write and interrupt flag
        _mem.Q(Queue + 0x38, 0x7_0000);
        _vtd.Write(0xa0, 4, 0); // unmask the invalidation event
        _vtd.Write(0x88, 8, 0x40);
        Assert.Equal(0x40ul, _vtd.Read(0x80, 8));
        Assert.Equal(0xabcdu, _mem.D(0x7_0000));
        Assert.Equal(1ul, _vtd.Read(0x9c, 4)); // ICS.IWC
        Assert.Single(_events);
        _mem.Q(Queue + 0x40, 0xf);                   // no such descriptor
        _vtd.Write(0x88, 8, 0x60);
        Assert.Equal(0x40ul, _vtd.Read(0x80, 8));    // the head stays at it
        Assert.NotEqual(0u, _vtd.FaultStatus & VtdModel.Iqe);
    }

    [Fact]
    public void Register_invalidations_complete_at_once_with_the_granularity_asked_for()
    {
        _vtd.Write(0x28, 8, 1UL << 63 | 1UL << 61); // ICC, global
        Assert.Equal(1UL << 59, _vtd.Read(0x28, 8) & (1UL << 63 | 3UL << 59)); // ICC clear, CAIG global
        _vtd.Write(0x208, 8, 1UL << 63 | 2UL << 60); // IVT, domain
        Assert.Equal(2UL << 57, _vtd.Read(0x208, 8) & (1UL << 63 | 3UL << 57));
    }
}
