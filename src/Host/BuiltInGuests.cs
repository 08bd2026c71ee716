namespace KvmActors.Host;

/// <summary>The guest `kvmactors run` starts with no CONFIG: the seed's 12 bytes (2 + 2, printed as "4\n").</summary>
public static class BuiltInGuests
{
    public const string Seed = """
        # The seed guest: real mode, at 0x1000.
        #   mov dx, 0x3f8 ; add al, bl ; add al, '0' ; out dx, al ; mov al, 10 ; out dx, al ; hlt
        guest {
          name = seed
          image {
            inline = "ba f8 03 00 d8 04 30 ee b0 0a ee f4"
            load-address = 0x1000
          }
          cpu {
            registers {
              rip = 0x1000
              rax = 2
              rbx = 2
            }
          }
        }
        """;
}
