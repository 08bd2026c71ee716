using KvmActors.Sdk;

namespace KvmActors.Devices.IntelIommu;

/// <summary>Why a DMA or interrupt request was blocked: VT-d fault reason codes (the FR field of a fault record).</summary>
public enum VtdFault : byte
{
    RootNotPresent = 0x01,
    ContextNotPresent = 0x02,
    InvalidContext = 0x03,
    AddressBeyondWidth = 0x04,
    WriteNotAllowed = 0x05,
    ReadNotAllowed = 0x06,
    PageTableAccess = 0x07,
    RootTableAccess = 0x08,
    ContextTableAccess = 0x09,
    PageTableReserved = 0x0c,
    InterruptRequestReserved = 0x20,
    InterruptIndexBeyondTable = 0x21,
    IrteNotPresent = 0x22,
    IrteAccess = 0x23,
    IrteReserved = 0x24,
    CompatibilityBlocked = 0x25,
    SourceIdMismatch = 0x26,
}

/// <summary>What a <see cref="VtdModel"/> keeps (registers and the one fault record), for a snapshot.</summary>
public sealed record VtdState(uint Gsts, ulong Rtaddr, ulong RootTable, ulong Ccmd, uint Fsts, uint Fectl, uint Fedata, ulong Feaddr,
    ulong Iqh, ulong Iqt, ulong Iqa, uint Ics, uint Iectl, uint Iedata, ulong Ieaddr, ulong Irta, ulong IrtLatched,
    ulong Iva, ulong Iotlb, ulong FrcdLo, ulong FrcdHi);

/// <summary>
/// The register model of an Intel VT-d remapping unit (QEMU's <c>-device intel-iommu</c>) as its 4 KiB register page
/// shows it (at 0xfed90000 on a Q35), and the remapping it does for the platform (<see cref="IIommu"/>).
/// </summary>
/// <remarks>
/// <para>Registers (VT-d specification, chapter 11): VER 1.0; CAP: 16-bit domain IDs, SAGAW 39-bit (3-level) and 48-bit
/// (4-level), MGAW 48, 2 MiB and 1 GiB second-level pages (SLLPS), one fault recording register at 0x220; ECAP:
/// coherent table walks (C), queued invalidation (QI), interrupt remapping (IR), pass-through (PT), IOTLB registers
/// at 0x200. Not built: extended interrupt mode (EIM, x2APIC destinations), posted interrupts, device TLBs,
/// scalable mode and PASIDs, the protected memory regions, advanced fault logging.</para>
/// <para>GCMD/GSTS: TE, SRTP (latches RTADDR), QIE, IRE, SIRTP (latches IRTA), CFI; WBF and SFL are accepted and do
/// nothing (CAP.RWBF = 0; no advanced fault log).</para>
/// <para>Nothing is cached: every DMA walks root table → context entry → second-level tables, every interrupt reads its
/// IRTE. So context-cache, IOTLB and interrupt-entry-cache invalidations (registers or queued) complete at once,
/// which is what they guarantee.</para>
/// <para>Queued invalidation: a write to IQT consumes descriptors from IQH; invalidation-wait descriptors write their
/// status (SW) and raise the invalidation event (IF); an unknown or unsupported descriptor stops the queue at it with
/// FSTS.IQE.</para>
/// <para>Faults: a blocked request is recorded (unless its context entry or IRTE says fault processing disabled) in the
/// fault record (FSTS.PPF; a second while one is pending sets PFO) and raises the fault event (FECTL/FEDATA/FEADDR).</para>
/// <para>Thread-safe: register accesses come from the device's actor, translations from any DMA-ing device.</para>
/// </remarks>
public sealed class VtdModel : IIommu
{
    public const ulong RegisterPageSize = 4096;
    public const uint Version = 0x10;
    public const int FaultRecordOffset = 0x220, IotlbOffset = 0x200;
    public const ulong Cap = 6UL                        // ND: 16-bit domain IDs
        | 0x6UL << 8                                     // SAGAW: 39-bit and 48-bit
        | 47UL << 16                                     // MGAW - 1
        | (ulong)(FaultRecordOffset / 16) << 24          // FRO
        | 0x3UL << 34;                                   // SLLPS: 2 MiB, 1 GiB
    public const ulong EcapC = 1, EcapQi = 2, EcapIr = 8, EcapPt = 0x40;
    public const ulong EcapAll = EcapC | EcapQi | EcapIr | EcapPt | (ulong)(IotlbOffset / 16) << 8;

    /// <summary>ECAP as this unit reports it (IR only with interrupt remapping).</summary>
    public ulong Ecap { get; }

    // GCMD / GSTS bits.
    public const uint Te = 1u << 31, Srtp = 1u << 30, Sfl = 1u << 29, Wbf = 1u << 27, Qie = 1u << 26, Ire = 1u << 25, Sirtp = 1u << 24, Cfi = 1u << 23;
    // FSTS bits.
    public const uint Pfo = 1, Ppf = 2, Iqe = 0x10, FstsW1c = 0x7d;
    private const uint EventMask = 1u << 31, EventPending = 1u << 30;
    private const ulong AddressMask = 0x000f_ffff_ffff_f000;

    private readonly object _lock = new();
    private readonly IPhysicalMemory _memory;
    private readonly Action<MsiMessage> _event;

    private uint _gsts, _fsts, _fectl = EventMask, _fedata, _ics, _iectl = EventMask, _iedata;
    private ulong _rtaddr, _rootTable, _ccmd, _feaddr, _iqh, _iqt, _iqa, _ieaddr, _irta, _irtLatched, _iva, _iotlb, _frcdLo, _frcdHi;

    /// <param name="memory">Guest-physical memory (the tables and the queue live there).</param>
    /// <param name="event">Sends a fault or invalidation event interrupt (not remapped).</param>
    /// <param name="interruptRemapping">ECAP.IR: without it GCMD.IRE is ignored and interrupts pass untouched.</param>
    public VtdModel(IPhysicalMemory memory, Action<MsiMessage> @event, bool interruptRemapping = true)
    {
        Ecap = interruptRemapping ? EcapAll : EcapAll & ~EcapIr;
        _memory = memory;
        _event = @event;
    }

    public uint GlobalStatus { get { lock (_lock) return _gsts; } }
    public uint FaultStatus { get { lock (_lock) return _fsts; } }
    /// <summary>The fault record (low, high quadword): page address/interrupt index; SID, reason, type, F.</summary>
    public (ulong Low, ulong High) FaultRecord { get { lock (_lock) return (_frcdLo, _frcdHi); } }

    public ulong Read(ulong offset, int size)
    {
        lock (_lock)
        {
            var shift = (int)(offset & 7) * 8;
            var v = Qword((int)(offset & ~7UL)) >> shift;
            return size >= 8 ? v : v & ((1UL << (size * 8)) - 1);
        }
    }

    public void Write(ulong offset, int size, ulong value)
    {
        lock (_lock)
        {
            var at = (int)(offset & ~7UL);
            var shift = (int)(offset & 7) * 8;
            var bytes = (size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1) << shift;
            var bits = (value << shift) & bytes;
            var merged = (Qword(at) & ~bytes) | bits;
            var low = (bytes & 0xffff_ffff) != 0;
            var high = (bytes >> 32) != 0;
            switch (at)
            {
                case 0x18 when low: Command((uint)bits); break;
                case 0x20: _rtaddr = merged & ~0x3ffUL; break;
                case 0x28:
                    _ccmd = merged;
                    // ICC: done at once (nothing is cached); CAIG reports the granularity asked for (CIRG).
                    if ((_ccmd & 1UL << 63) != 0) _ccmd = (_ccmd & ~(1UL << 63) & ~(3UL << 59)) | ((_ccmd >> 61) & 3) << 59;
                    break;
                case 0x30 when high:
                    _fsts &= ~((uint)(bits >> 32) & FstsW1c);
                    if ((_fsts & Iqe) == 0) ProcessQueue();
                    break;
                case 0x38:
                    if (low) SetEventControl(ref _fectl, (uint)merged, _feaddr, _fedata);
                    if (high) _fedata = (uint)(merged >> 32);
                    break;
                case 0x40: _feaddr = merged & ~3UL; break;
                case 0x88:
                    _iqt = merged & 0x7fff0;
                    ProcessQueue();
                    break;
                case 0x90: _iqa = merged & (AddressMask | 7); break;
                case 0x98 when high:
                    if (((bits >> 32) & 1) != 0) _ics &= ~1u; // IWC is write-1-to-clear
                    break;
                case 0xa0:
                    if (low) SetEventControl(ref _iectl, (uint)merged, _ieaddr, _iedata);
                    if (high) _iedata = (uint)(merged >> 32);
                    break;
                case 0xa8: _ieaddr = merged & ~3UL; break;
                case 0xb8: _irta = merged & (AddressMask | 0xf); break; // EIME (bit 11) is not built: x2APIC mode stays off
                case IotlbOffset: _iva = merged; break;
                case IotlbOffset + 8:
                    _iotlb = merged;
                    if ((_iotlb & 1UL << 63) != 0) _iotlb = (_iotlb & ~(1UL << 63) & ~(3UL << 57)) | ((_iotlb >> 60) & 3) << 57;
                    break;
                case FaultRecordOffset + 8 when high:
                    if ((bits & 1UL << 63) != 0) { _frcdHi &= ~(1UL << 63); _fsts &= ~Ppf; }
                    break;
            }
        }
    }

    private ulong Qword(int at) => at switch
    {
        0x00 => Version,
        0x08 => Cap,
        0x10 => Ecap,
        0x18 => (ulong)_gsts << 32, // GCMD reads 0
        0x20 => _rtaddr,
        0x28 => _ccmd,
        0x30 => (ulong)_fsts << 32,
        0x38 => _fectl | (ulong)_fedata << 32,
        0x40 => _feaddr,
        0x80 => _iqh,
        0x88 => _iqt,
        0x90 => _iqa,
        0x98 => (ulong)_ics << 32,
        0xa0 => _iectl | (ulong)_iedata << 32,
        0xa8 => _ieaddr,
        0xb8 => _irta,
        IotlbOffset => _iva,
        IotlbOffset + 8 => _iotlb,
        FaultRecordOffset => _frcdLo,
        FaultRecordOffset + 8 => _frcdHi,
        _ => 0,
    };

    private void Command(uint cmd)
    {
        if ((Ecap & EcapIr) == 0) cmd &= ~(Ire | Cfi | Sirtp);
        if ((cmd & Srtp) != 0)
        {
            _rootTable = _rtaddr;
            _gsts |= Srtp;
        }
        if ((cmd & Sirtp) != 0)
        {
            _irtLatched = _irta;
            _gsts |= Sirtp;
        }
        foreach (var bit in new[] { Te, Ire, Cfi })
            _gsts = (cmd & bit) != 0 ? _gsts | bit : _gsts & ~bit;
        if ((cmd & Qie) != 0 && (_gsts & Qie) == 0) _gsts |= Qie;
        else if ((cmd & Qie) == 0 && (_gsts & Qie) != 0)
        {
            _gsts &= ~Qie;
            _iqh = 0; // the head resets when the queue is disabled
        }
    }

    private void SetEventControl(ref uint control, uint written, ulong address, uint data)
    {
        control = (control & ~EventMask) | (written & EventMask);
        if ((control & EventMask) == 0 && (control & EventPending) != 0)
        {
            control &= ~EventPending;
            _event(new MsiMessage(address, data));
        }
    }

    private void RaiseEvent(ref uint control, ulong address, uint data)
    {
        if ((control & EventMask) != 0) control |= EventPending;
        else _event(new MsiMessage(address, data));
    }

    // ---- queued invalidation ----

    private void ProcessQueue()
    {
        if ((_gsts & Qie) == 0 || (_fsts & Iqe) != 0) return;
        var size = 4096UL << (int)(_iqa & 7);
        var base_ = _iqa & AddressMask;
        Span<byte> d = stackalloc byte[16];
        Span<byte> word = stackalloc byte[4];
        while (_iqh != _iqt)
        {
            if (!_memory.IsBacked(base_ + _iqh, 16)) { _fsts |= Iqe; RaiseFault(); return; }
            _memory.Read(base_ + _iqh, d);
            var lo = BitConverter.ToUInt64(d);
            var hi = BitConverter.ToUInt64(d[8..]);
            switch (lo & 0xf)
            {
                case 0x1: // context-cache invalidate
                case 0x2: // IOTLB invalidate
                case 0x4: // interrupt entry cache invalidate
                    break;
                case 0x5: // invalidation wait
                    if ((lo & 0x20) != 0)
                    {
                        var status = hi & ~3UL;
                        if (!_memory.IsBacked(status, 4)) { _fsts |= Iqe; RaiseFault(); return; }
                        BitConverter.TryWriteBytes(word, (uint)(lo >> 32));
                        _memory.Write(status, word);
                    }
                    if ((lo & 0x10) != 0)
                    {
                        _ics |= 1;
                        RaiseEvent(ref _iectl, _ieaddr, _iedata);
                    }
                    break;
                default: // device-TLB (no ECAP.DT), PASID-based and unknown types: an invalid descriptor
                    _fsts |= Iqe;
                    RaiseFault();
                    return;
            }
            _iqh = (_iqh + 16) % size;
        }
    }

    // ---- faults ----

    private void RaiseFault() => RaiseEvent(ref _fectl, _feaddr, _fedata);

    private void Record(VtdFault reason, ushort sid, ulong info, bool read)
    {
        if ((_frcdHi & 1UL << 63) != 0)
        {
            _fsts |= Pfo; // one record, still pending: overflow
            RaiseFault();
            return;
        }
        _frcdLo = info;
        _frcdHi = sid | (ulong)(byte)reason << 32 | (read ? 1UL << 62 : 0) | 1UL << 63;
        _fsts |= Ppf;
        RaiseFault();
    }

    // ---- DMA remapping ----

    public DmaTranslation? TranslateDma(ushort requester, ulong address, bool write)
    {
        lock (_lock)
        {
            var r = Walk(requester, address, write, out var fault, out var suppress);
            if (r is null && !suppress) Record(fault, requester, address & ~0xfffUL, !write);
            return r;
        }
    }

    private bool ReadQ(ulong at, out ulong value)
    {
        value = 0;
        if (!_memory.IsBacked(at, 8)) return false;
        Span<byte> b = stackalloc byte[8];
        _memory.Read(at, b);
        value = BitConverter.ToUInt64(b);
        return true;
    }

    private DmaTranslation? Walk(ushort requester, ulong address, bool write, out VtdFault fault, out bool suppress)
    {
        fault = 0;
        suppress = false;
        if ((_gsts & Te) == 0) return new DmaTranslation(address, 4096 - (address & 0xfff));
        var root = _rootTable & AddressMask;
        if (!ReadQ(root + (ulong)(requester >> 8) * 16, out var re)) { fault = VtdFault.RootTableAccess; return null; }
        if ((re & 1) == 0) { fault = VtdFault.RootNotPresent; return null; }
        var ce = (re & AddressMask) + (ulong)(requester & 0xff) * 16;
        if (!ReadQ(ce, out var lo) || !ReadQ(ce + 8, out var hi)) { fault = VtdFault.ContextTableAccess; return null; }
        if ((lo & 1) == 0) { fault = VtdFault.ContextNotPresent; return null; }
        suppress = (lo & 2) != 0; // FPD
        switch ((lo >> 2) & 3)
        {
            case 0: break;
            case 2: return new DmaTranslation(address, 4096 - (address & 0xfff)); // pass-through (ECAP.PT)
            default: fault = VtdFault.InvalidContext; return null; // device-TLB translation (no ECAP.DT) and reserved
        }
        var levels = (hi & 7) switch { 1 => 3, 2 => 4, _ => 0 };
        if (levels == 0) { fault = VtdFault.InvalidContext; return null; }
        var width = 12 + 9 * levels;
        if (address >> width != 0) { fault = VtdFault.AddressBeyondWidth; return null; }
        var table = lo & AddressMask;
        for (var level = levels; level >= 1; level--)
        {
            var shift = 12 + 9 * (level - 1);
            if (!ReadQ(table + ((address >> shift) & 511) * 8, out var pte)) { fault = VtdFault.PageTableAccess; return null; }
            // Access rights are checked at every level: a request needs the bit in each entry on the way.
            if (write ? (pte & 2) == 0 : (pte & 1) == 0) { fault = write ? VtdFault.WriteNotAllowed : VtdFault.ReadNotAllowed; return null; }
            var super = level > 1 && (pte & 0x80) != 0;
            if (super && level > 3) { fault = VtdFault.PageTableReserved; return null; } // no 512 GiB pages
            if (level == 1 || super)
            {
                var pageSize = 1UL << shift;
                var offset = address & (pageSize - 1);
                return new DmaTranslation((pte & AddressMask & ~(pageSize - 1)) + offset, pageSize - offset);
            }
            table = pte & AddressMask;
        }
        fault = VtdFault.PageTableAccess;
        return null;
    }

    // ---- interrupt remapping ----

    public MsiMessage? RemapInterrupt(ushort? requester, MsiMessage msi)
    {
        lock (_lock)
        {
            if ((_gsts & Ire) == 0) return msi;
            if (!msi.Remappable)
            {
                if ((_gsts & Cfi) != 0) return msi; // compatibility format allowed through
                Record(VtdFault.CompatibilityBlocked, requester ?? 0, 0, read: false);
                return null;
            }
            var handle = (uint)((msi.Address >> 5) & 0x7fff) | (uint)((msi.Address >> 2) & 1) << 15;
            if ((msi.Address & 0x8) != 0) handle = (handle + (msi.Data & 0xffff)) & 0xffff; // SHV: + subhandle
            var info = (ulong)handle << 48;
            var entries = 1UL << (int)((_irtLatched & 0xf) + 1);
            if (handle >= entries) { Record(VtdFault.InterruptIndexBeyondTable, requester ?? 0, info, false); return null; }
            var at = (_irtLatched & AddressMask) + handle * 16UL;
            if (!ReadQ(at, out var lo) || !ReadQ(at + 8, out var hi)) { Record(VtdFault.IrteAccess, requester ?? 0, info, false); return null; }
            var fpd = (lo & 2) != 0;
            VtdFault? fault = null;
            if ((lo & 1) == 0) fault = VtdFault.IrteNotPresent;
            else if ((lo & 0x8000) != 0 || (lo & 0xff00_7000) != 0 || (hi >> 20) != 0) fault = VtdFault.IrteReserved; // posted (IM) is not built
            else if (requester is { } sid && !SourceIdMatches(sid, hi)) fault = VtdFault.SourceIdMismatch;
            if (fault is { } f)
            {
                if (!fpd) Record(f, requester ?? 0, info, false);
                return null;
            }
            var vector = (lo >> 16) & 0xff;
            var delivery = (lo >> 5) & 7;
            var level = (lo & 0x10) != 0;
            var dest = (lo >> 40) & 0xff; // xAPIC mode: destination ID in bits 47:40 (EIM not built)
            var address = 0xfee0_0000UL | dest << 12 | ((lo >> 3) & 1) << 3 | ((lo >> 2) & 1) << 2;
            var data = (uint)(vector | delivery << 8 | (level ? 1UL << 15 | 1UL << 14 : 0));
            return new MsiMessage(address, data);
        }
    }

    /// <summary>SVT 1: the SID with the low 0-3 bits SQ says to ignore; 2: the requester's bus in [SID 15:8, SID 7:0]; 0: none.</summary>
    private static bool SourceIdMatches(ushort requester, ulong hi)
    {
        var sid = (ushort)hi;
        switch ((hi >> 18) & 3)
        {
            case 0: return true;
            case 1:
                var ignore = ((hi >> 16) & 3) switch { 0 => 0, 1 => 0b100, 2 => 0b110, _ => 0b111 };
                return (requester & ~ignore) == (sid & ~ignore);
            case 2:
                var bus = requester >> 8;
                return bus >= sid >> 8 && bus <= (sid & 0xff);
            default: return false;
        }
    }

    public VtdState Save()
    {
        lock (_lock)
            return new VtdState(_gsts, _rtaddr, _rootTable, _ccmd, _fsts, _fectl, _fedata, _feaddr, _iqh, _iqt, _iqa, _ics, _iectl, _iedata,
                _ieaddr, _irta, _irtLatched, _iva, _iotlb, _frcdLo, _frcdHi);
    }

    public void Restore(VtdState s)
    {
        lock (_lock)
        {
            (_gsts, _rtaddr, _rootTable, _ccmd, _fsts, _fectl, _fedata, _feaddr) = (s.Gsts, s.Rtaddr, s.RootTable, s.Ccmd, s.Fsts, s.Fectl, s.Fedata, s.Feaddr);
            (_iqh, _iqt, _iqa, _ics, _iectl, _iedata, _ieaddr) = (s.Iqh, s.Iqt, s.Iqa, s.Ics, s.Iectl, s.Iedata, s.Ieaddr);
            (_irta, _irtLatched, _iva, _iotlb, _frcdLo, _frcdHi) = (s.Irta, s.IrtLatched, s.Iva, s.Iotlb, s.FrcdLo, s.FrcdHi);
        }
    }
}
