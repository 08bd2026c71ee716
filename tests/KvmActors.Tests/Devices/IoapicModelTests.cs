using KvmActors.Devices.Ioapic;
using KvmActors.Sdk;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>The userspace IOAPIC: registers, edge and level delivery, Remote IRR and EOI, message encoding.</summary>
public sealed class IoapicModelTests
{
    private readonly List<(int Pin, MsiMessage Msi)> _sent = new();
    private readonly IoapicModel _io;

    public IoapicModelTests() => _io = new IoapicModel((pin, msi) => { _sent.Add((pin, msi)); return true; });

    private uint Reg(uint reg) { _io.Write(0, 4, reg); return (uint)_io.Read(0x10, 4); }
    private void SetReg(uint reg, uint value) { _io.Write(0, 4, reg); _io.Write(0x10, 4, value); }
    private void Route(int pin, ulong entry) { SetReg(0x11 + (uint)pin * 2, (uint)(entry >> 32)); SetReg(0x10 + (uint)pin * 2, (uint)entry); }

    [Fact]
    public void Id_version_and_arbitration_read_as_a_24_pin_version_0x20_ioapic_whose_entries_start_masked()
    {
        Assert.Equal(0x00170020u, Reg(1));
        SetReg(0, 0x0a00_0000);
        Assert.Equal(0x0a00_0000u, Reg(0));
        Assert.Equal(0x0a00_0000u, Reg(2));
        for (var pin = 0; pin < 24; pin++) Assert.Equal(IoapicModel.Masked, _io.Entry(pin));
        SetReg(1, 0); // read-only
        Assert.Equal(0x00170020u, Reg(1));
    }

    [Fact]
    public void An_edge_entry_sends_once_per_rising_edge_and_a_masked_edge_waits_for_the_unmask()
    {
        Route(4, 0x31 | 2UL << 56);
        _io.SetLine(4, true);
        _io.SetLine(4, true); // still high: no edge
        Assert.Equal([(4, new MsiMessage(0xfee0_2000, 0x31))], _sent);
        _io.SetLine(4, false);
        _io.SetLine(4, true);
        Assert.Equal(2, _sent.Count);
        Route(4, 0x31 | IoapicModel.Masked);
        _io.SetLine(4, false);
        _io.SetLine(4, true);
        Assert.Equal(2, _sent.Count);
        Route(4, 0x31);
        Assert.Equal(3, _sent.Count);
    }

    [Fact]
    public void A_level_entry_sets_remote_irr_and_sends_again_after_the_eoi_while_the_line_stays_asserted()
    {
        Route(10, 0x45 | IoapicModel.LevelTriggered);
        _io.SetLine(10, true);
        Assert.NotEqual(0ul, _io.Entry(10) & IoapicModel.RemoteIrr);
        Assert.Equal(0x45u | 0xc000, Assert.Single(_sent).Msi.Data);
        _io.EndOfInterrupt(0x46); // another vector
        Assert.Single(_sent);
        _io.EndOfInterrupt(0x45);
        Assert.Equal(2, _sent.Count);
        _io.SetLine(10, false);
        _io.Write(0x40, 4, 0x45); // the EOI register
        Assert.Equal(0ul, _io.Entry(10) & IoapicModel.RemoteIrr);
        Assert.Equal(2, _sent.Count);
    }

    [Fact]
    public void An_active_low_level_entry_is_asserted_while_the_line_is_low()
    {
        Route(11, 0x50 | IoapicModel.LevelTriggered | IoapicModel.ActiveLow);
        _io.SetLine(11, true);
        Assert.Empty(_sent);
        _io.SetLine(11, false);
        Assert.Single(_sent);
    }

    [Fact]
    public void A_remappable_entry_puts_its_interrupt_index_where_vt_d_reads_it()
    {
        // kvm-unit-tests' vtd_setup_ioapic_irq: vector 0xed, format bit 48, index 1 in bits 63:49.
        var m = IoapicModel.Message(0xed | 1UL << 48 | 1UL << 49);
        Assert.True(m.Remappable);
        Assert.Equal(1ul, (m.Address >> 5) & 0x7fff);
        Assert.Equal(0xfee0_0000ul | 1 << 5 | 1 << 4, m.Address);
        // Index bit 15 from bit 11 of the entry to address bit 2.
        Assert.Equal(1ul, (IoapicModel.Message(1UL << 11 | 1UL << 48).Address >> 2) & 1);
        // Compatibility format: logical destination mode, destination 0x0f, lowest priority.
        Assert.Equal(new MsiMessage(0xfee0_f004, 0x0130), IoapicModel.Message(0x30 | 1 << 8 | 1 << 11 | 0x0fUL << 56));
    }
}
