using System.Text;
using KvmActors.Devices.PciTestdev;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>pci-testdev's registers, driven as kvm-unit-tests' lib/pci-testdev.c drives them.</summary>
public sealed class PciTestdevTests
{
    private static string Name(PciTestdevModel m, int bar)
    {
        var sb = new StringBuilder();
        for (ulong i = 16; ; i++)
        {
            var c = (char)m.Read(bar, i, 1);
            if (c == 0) return sb.ToString();
            sb.Append(c);
        }
    }

    /// <summary>lib/pci-testdev.c's pci_testdev_one: true when the test ran and counted 0 or all 16 hits.</summary>
    private static bool RunOne(PciTestdevModel m, int bar, int test)
    {
        m.Write(bar, 0, 1, (ulong)test);
        if (m.Read(bar, 12, 4) != 0) return false;
        var width = (int)m.Read(bar, 1, 1);
        if (width is not (1 or 2 or 4)) return false;
        var data = m.Read(bar, 8, 4);
        var offset = m.Read(bar, 4, 4);
        for (var i = 0; i < 16; i++) m.Write(bar, offset, width, data);
        var count = m.Read(bar, 12, 4);
        return count is 0 or 16;
    }

    [Theory]
    [InlineData(PciTestdevModel.MemBar, "mmio")]
    [InlineData(PciTestdevModel.IoBar, "portio")]
    public void Each_bar_has_three_tests_that_count_every_hit_then_none(int bar, string prefix)
    {
        var m = new PciTestdevModel();
        var names = new List<string>();
        for (var t = 0; RunOne(m, bar, t); t++)
        {
            Assert.Equal(16u, m.Count(m.Current));
            names.Add(Name(m, bar));
        }
        Assert.Equal([$"{prefix}-no-eventfd", $"{prefix}-wildcard-eventfd", $"{prefix}-datamatch-eventfd"], names);
        Assert.Equal(-1, m.Current); // test 3 selects nothing, so the loop ends there
    }

    [Fact]
    public void The_header_has_the_hit_offset_data_and_width_of_the_test()
    {
        var m = new PciTestdevModel();
        m.Write(PciTestdevModel.IoBar, 0, 1, 2); // portio-datamatch-eventfd: test 5
        Assert.Equal(5ul, m.Read(PciTestdevModel.IoBar, 0, 1));
        Assert.Equal(1ul, m.Read(PciTestdevModel.IoBar, 1, 1));
        Assert.Equal(128ul + 5, m.Read(PciTestdevModel.IoBar, 4, 4));
        Assert.Equal(0xfaul, m.Read(PciTestdevModel.IoBar, 8, 4));
        Assert.Equal(0ul, m.Read(PciTestdevModel.IoBar, 200, 4)); // past the header
    }

    [Fact]
    public void Datamatch_counts_only_matching_writes_and_wildcard_any_write_at_its_offset()
    {
        var m = new PciTestdevModel();
        m.Write(PciTestdevModel.MemBar, 0, 1, 2);
        var hit = PciTestdevModel.HitOffset(2);
        m.Write(PciTestdevModel.MemBar, hit, 1, 0x11);      // wrong data
        m.Write(PciTestdevModel.MemBar, hit, 2, 0xfa);      // wrong width
        m.Write(PciTestdevModel.MemBar, hit + 1, 1, 0xfa);  // wrong offset
        m.Write(PciTestdevModel.MemBar, hit, 1, 0xfa);
        Assert.Equal(1u, m.Count(2));
        m.Write(PciTestdevModel.MemBar, 0, 1, 1);
        m.Write(PciTestdevModel.MemBar, PciTestdevModel.HitOffset(1), 4, 0x12345678);
        Assert.Equal(1u, m.Count(1));
    }

    [Fact]
    public void With_no_test_selected_reads_are_zero_and_writes_count_nothing()
    {
        var m = new PciTestdevModel();
        Assert.Equal(0ul, m.Read(PciTestdevModel.MemBar, 12, 4));
        m.Write(PciTestdevModel.MemBar, PciTestdevModel.HitOffset(0), 1, 0xfa);
        Assert.All(Enumerable.Range(0, 6), t => Assert.Equal(0u, m.Count(t)));
    }

    [Fact]
    public void A_saved_state_restores_the_selected_test_and_counts_and_a_bad_one_is_refused()
    {
        var m = new PciTestdevModel();
        m.Write(PciTestdevModel.IoBar, 0, 1, 1);
        m.Write(PciTestdevModel.IoBar, PciTestdevModel.HitOffset(4), 1, 0);
        var restored = new PciTestdevModel();
        restored.Restore(m.Save());
        Assert.Equal(4, restored.Current);
        Assert.Equal(1ul, restored.Read(PciTestdevModel.IoBar, 12, 4));
        Assert.Throws<KvmActors.Sdk.DeviceStateException>(() => restored.Restore(new PciTestdevState(6, new uint[6])));
        Assert.Throws<KvmActors.Sdk.DeviceStateException>(() => restored.Restore(new PciTestdevState(0, new uint[2])));
    }
}
