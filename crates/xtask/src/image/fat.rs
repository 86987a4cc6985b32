//! The EFI system partition's FAT image, reproducibly. mtools (which copies files into a FAT image
//! without mounting it) keeps the files' times with `-p` but stamps the directories it creates
//! with the wall clock, and Debian's mtools does not honour SOURCE_DATE_EPOCH. So after copying,
//! every directory entry's creation, access and modification time is set to the epoch here: a
//! walk of the directory tree (FAT12/16 fixed root directory, or FAT32 root cluster chain).

use crate::cmd;
use crate::error::{Error, Result};
use std::fs;
use std::path::Path;
use std::process::Command;

/// Makes `image` (`size` bytes) a FAT file system labelled `label` with a fixed volume id,
/// holding the tree `content`, every time in it set to `epoch`.
pub fn build(
    image: &Path,
    size: u64,
    label: &str,
    volume_id: &str,
    content: &Path,
    epoch: u64,
) -> Result<()> {
    if image.exists() {
        fs::remove_file(image).map_err(Error::io(format!("removing {}", image.display())))?;
    }
    let file =
        fs::File::create(image).map_err(Error::io(format!("creating {}", image.display())))?;
    file.set_len(size)
        .map_err(Error::io(format!("sizing {}", image.display())))?;
    drop(file);
    cmd::run(
        Command::new("mkfs.vfat")
            .args([
                "-F", "32", "-S", "512", "-s", "1", "-n", label, "-i", volume_id,
            ])
            .arg(image)
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    )?;
    let mut entries: Vec<_> = fs::read_dir(content)
        .map_err(Error::io(format!("listing {}", content.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::io(format!("listing {}", content.display())))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        cmd::run(
            Command::new("mcopy")
                .args(["-s", "-p", "-Q", "-i"])
                .arg(image)
                .arg(entry.path())
                .arg("::")
                .env("MTOOLS_SKIP_CHECK", "1"),
        )?;
    }
    let mut bytes = fs::read(image).map_err(Error::io(format!("reading {}", image.display())))?;
    set_times(&mut bytes, epoch)
        .map_err(|why| Error::Setup(format!("{}: {why}", image.display())))?;
    fs::write(image, bytes).map_err(Error::io(format!("writing {}", image.display())))
}

/// The FAT geometry the walk needs.
struct Geometry {
    bytes_per_sector: usize,
    sectors_per_cluster: usize,
    fat_start: usize,
    root_dir: Option<(usize, usize)>,
    root_cluster: u32,
    data_start: usize,
    fat32: bool,
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn geometry(b: &[u8]) -> std::result::Result<Geometry, String> {
    if b.len() < 512 || b[510] != 0x55 || b[511] != 0xaa {
        return Err("no FAT boot sector".into());
    }
    let bytes_per_sector = le16(b, 11);
    let sectors_per_cluster = usize::from(b[13]);
    let reserved = le16(b, 14);
    let fats = usize::from(b[16]);
    let root_entries = le16(b, 17);
    let fat_size = match le16(b, 22) {
        0 => le32(b, 36) as usize,
        n => n,
    };
    if bytes_per_sector == 0 || sectors_per_cluster == 0 || fats == 0 || fat_size == 0 {
        return Err("implausible FAT boot sector".into());
    }
    let fat32 = root_entries == 0;
    let fat_start = reserved * bytes_per_sector;
    let root_start = fat_start + fats * fat_size * bytes_per_sector;
    let root_len = root_entries * 32;
    let data_start = root_start + root_len.div_ceil(bytes_per_sector) * bytes_per_sector;
    Ok(Geometry {
        bytes_per_sector,
        sectors_per_cluster,
        fat_start,
        root_dir: (!fat32).then_some((root_start, root_len)),
        root_cluster: if fat32 { le32(b, 44) } else { 0 },
        data_start,
        fat32,
    })
}

impl Geometry {
    fn cluster_bytes(&self) -> usize {
        self.bytes_per_sector * self.sectors_per_cluster
    }

    fn cluster_offset(&self, cluster: u32) -> usize {
        self.data_start + (cluster as usize - 2) * self.cluster_bytes()
    }

    fn next(&self, b: &[u8], cluster: u32) -> Option<u32> {
        let next = if self.fat32 {
            le32(b, self.fat_start + cluster as usize * 4) & 0x0fff_ffff
        } else {
            le16(b, self.fat_start + cluster as usize * 2) as u32
        };
        let end = if self.fat32 { 0x0fff_fff8 } else { 0xfff8 };
        (2..end).contains(&next).then_some(next)
    }

    /// The byte ranges of a directory stored in a cluster chain.
    fn chain(&self, b: &[u8], first: u32) -> Vec<(usize, usize)> {
        let mut ranges = Vec::new();
        let mut cluster = Some(first);
        while let Some(c) = cluster {
            if ranges.len() > 65536 {
                break;
            }
            ranges.push((self.cluster_offset(c), self.cluster_bytes()));
            cluster = self.next(b, c);
        }
        ranges
    }
}

/// DOS date and time of `epoch` (UTC): (date, time).
fn dos_time(epoch: u64) -> (u16, u16) {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = (((year - 1980).clamp(0, 127) as u16) << 9) | ((month as u16) << 5) | day as u16;
    let time = (((secs / 3600) as u16) << 11)
        | ((((secs / 60) % 60) as u16) << 5)
        | ((secs % 60) / 2) as u16;
    (date, time)
}

/// Sets every directory entry's times to `epoch`, walking the whole tree.
fn set_times(b: &mut [u8], epoch: u64) -> std::result::Result<(), String> {
    let g = geometry(b)?;
    let (date, time) = dos_time(epoch);
    let mut pending: Vec<Vec<(usize, usize)>> = vec![match g.root_dir {
        Some(range) => vec![range],
        None => g.chain(b, g.root_cluster),
    }];
    let mut visited = 0;
    while let Some(ranges) = pending.pop() {
        visited += 1;
        if visited > 100_000 {
            return Err("directory tree too deep or cyclic".into());
        }
        'dir: for (start, len) in ranges {
            for entry in (start..start + len).step_by(32) {
                if entry + 32 > b.len() {
                    return Err("directory entry beyond the image".into());
                }
                match b[entry] {
                    0x00 => break 'dir,
                    0xe5 => continue,
                    _ => {}
                }
                let attr = b[entry + 11];
                if attr & 0x0f == 0x0f {
                    continue; // a long-name part: no times
                }
                b[entry + 13] = 0;
                for at in [14, 22] {
                    b[entry + at..entry + at + 2].copy_from_slice(&time.to_le_bytes());
                }
                for at in [16, 18, 24] {
                    b[entry + at..entry + at + 2].copy_from_slice(&date.to_le_bytes());
                }
                let dot = b[entry] == b'.';
                if attr & 0x10 != 0 && attr & 0x08 == 0 && !dot {
                    let high = if g.fat32 {
                        le16(b, entry + 20) as u32
                    } else {
                        0
                    };
                    let cluster = (high << 16) | le16(b, entry + 26) as u32;
                    if cluster >= 2 {
                        pending.push(g.chain(b, cluster));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{build, dos_time, geometry};

    /// Two builds of the same tree, more than FAT's 2-second resolution apart, are identical,
    /// and the directories mtools made carry the epoch (mkfs.vfat and mcopy from
    /// tests/setup-host.sh).
    #[test]
    fn two_builds_seconds_apart_are_identical() {
        let dir = std::env::temp_dir().join(format!("keywarden-fat-test-{}", std::process::id()));
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("EFI/BOOT")).unwrap();
        std::fs::write(tree.join("EFI/BOOT/grub.cfg"), "set timeout=0\n").unwrap();
        let epoch = 1_700_000_000;
        let (a, b) = (dir.join("a.vfat"), dir.join("b.vfat"));
        build(&a, 64 << 20, "BOOT", "4b570001", &tree, epoch).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        build(&b, 64 << 20, "BOOT", "4b570001", &tree, epoch).unwrap();
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(geometry(&a).unwrap().fat32);
        assert!(a == b, "two builds of the same tree differ");
        let (date, time) = dos_time(epoch);
        let mut needle = time.to_le_bytes().to_vec();
        needle.extend_from_slice(&date.to_le_bytes());
        assert!(
            a.windows(4).filter(|w| *w == needle.as_slice()).count() >= 3,
            "the epoch is not in the directory entries"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dos_time_of_known_instants() {
        // 1980-01-01 00:00:00 UTC, the FAT epoch: date 1/1/0, time 0.
        assert_eq!(dos_time(315_532_800), ((1 << 5) | 1, 0));
        // 2026-11-23 19:40:06 UTC.
        let (date, time) = dos_time(1_795_462_806);
        assert_eq!((date >> 9, (date >> 5) & 15, date & 31), (46, 11, 23));
        assert_eq!((time >> 11, (time >> 5) & 63, time & 31), (19, 40, 3));
    }
}
