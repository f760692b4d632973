//! Kubernetes quantities of CPU and memory → what was written and the number it stands for. One parser per kind,
//! used alike for an app's `resources` and an environment's `limits`; the text is kept so that a Kubernetes
//! manifest can carry it unchanged.

use crate::model::{Cpu, Memory};

/// Why a text is not a quantity of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuantityError {
    /// Not a form the kind accepts.
    Malformed,
    /// Zero, which would let nothing run.
    Zero,
    /// A fraction of the smallest unit counted (a millicore).
    TooFine,
    /// More than the kind counts.
    TooLarge,
}

/// Far above any machine, and low enough that millicores never come near overflowing.
const MAX_CORES: u64 = 1_000_000;

/// Binary units first: `Mi` must not be read as `M` followed by a stray `i`.
const MEMORY_UNITS: &[(&str, u64)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

impl Cpu {
    /// Cores (`1`, `0.5`, `1.5`) or millicores (`250m`); at least one millicore, at most a million cores.
    pub(crate) fn parse(text: &str) -> Result<Cpu, QuantityError> {
        let millicores = match text.strip_suffix('m') {
            Some(millicores) => shifted_decimal(millicores, 0)?,
            None => shifted_decimal(text, 3)?,
        };
        if millicores == 0 {
            return Err(QuantityError::Zero);
        }
        if millicores > MAX_CORES * 1000 {
            return Err(QuantityError::TooLarge);
        }
        Ok(Cpu {
            quantity: text.to_owned(),
            millicores,
        })
    }
}

impl Memory {
    /// A whole number of bytes, optionally with a unit: `Ki`, `Mi`, `Gi`, `Ti` (powers of 1024) or `k`, `M`,
    /// `G`, `T` (powers of 1000).
    pub(crate) fn parse(text: &str) -> Result<Memory, QuantityError> {
        let (number, unit) = MEMORY_UNITS
            .iter()
            .find_map(|(suffix, unit)| Some((text.strip_suffix(suffix)?, *unit)))
            .unwrap_or((text, 1));
        if number.contains('.') {
            return Err(QuantityError::Malformed);
        }
        let bytes = shifted_decimal(number, 0)?
            .checked_mul(unit)
            .ok_or(QuantityError::TooLarge)?;
        if bytes == 0 {
            return Err(QuantityError::Zero);
        }
        Ok(Memory {
            quantity: text.to_owned(),
            bytes,
        })
    }
}

/// The decimal number `text` (`1`, `1.5`, `.5`) times 10^`shift`, if that is a whole number.
fn shifted_decimal(text: &str, shift: usize) -> Result<u64, QuantityError> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = whole.bytes().chain(fraction.bytes());
    if whole.len() + fraction.len() == 0 || !digits.clone().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Malformed);
    }
    let (kept, dropped) = fraction.split_at(fraction.len().min(shift));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(QuantityError::TooFine);
    }
    let padding = std::iter::repeat_n(b'0', shift - kept.len());
    whole
        .bytes()
        .chain(kept.bytes())
        .chain(padding)
        .try_fold(0_u64, |value, digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or(QuantityError::TooLarge)
}

/// What is wrong with `text` as the CPU amount of an app or a total, and what to write instead.
pub(crate) fn cpu_problem(text: &str, error: QuantityError) -> String {
    let hint = "write cores (`1`, `0.5`) or millicores (`250m`)";
    match error {
        QuantityError::Malformed => format!("`{text}` is not a CPU amount; {hint}"),
        QuantityError::Zero => {
            format!("`{text}` is not a CPU amount: zero would let nothing run; {hint}")
        }
        QuantityError::TooFine => format!(
            "`{text}` is not a CPU amount: it is finer than a millicore (`1m`, a thousandth of a core); round it to whole millicores"
        ),
        QuantityError::TooLarge => {
            format!("`{text}` is not a CPU amount: it is more than {MAX_CORES} cores")
        }
    }
}

/// What is wrong with `text` as the memory amount of an app or a total, and what to write instead.
pub(crate) fn memory_problem(text: &str, error: QuantityError) -> String {
    let hint = "write a number with a unit such as `256Mi` or `1Gi`";
    match error {
        QuantityError::Malformed | QuantityError::TooFine => {
            format!("`{text}` is not a memory amount; {hint}")
        }
        QuantityError::Zero => {
            format!("`{text}` is not a memory amount: zero would let nothing run; {hint}")
        }
        QuantityError::TooLarge => format!(
            "`{text}` is not a memory amount: it is more bytes than a 64-bit count holds (16 EiB)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::QuantityError::{self, Malformed, TooFine, TooLarge, Zero};
    use crate::model::{Cpu, Memory};

    #[track_caller]
    fn check_cpu(input: &str, expected: Result<u64, QuantityError>) {
        let parsed = Cpu::parse(input);
        assert_eq!(
            parsed.as_ref().map(|c| c.millicores).map_err(|e| *e),
            expected,
            "{input}"
        );
        if let Ok(cpu) = parsed {
            assert_eq!(cpu.quantity, input, "the text is kept as written");
        }
    }

    #[track_caller]
    fn check_memory(input: &str, expected: Result<u64, QuantityError>) {
        let parsed = Memory::parse(input);
        assert_eq!(
            parsed.as_ref().map(|m| m.bytes).map_err(|e| *e),
            expected,
            "{input}"
        );
        if let Ok(memory) = parsed {
            assert_eq!(memory.quantity, input, "the text is kept as written");
        }
    }

    #[test]
    fn cpu_in_millicores() {
        check_cpu("250m", Ok(250));
        check_cpu("1m", Ok(1));
        check_cpu("1500m", Ok(1500));
        check_cpu("0250m", Ok(250));
        check_cpu("250.0m", Ok(250));
        check_cpu("0m", Err(Zero));
        check_cpu("0.5m", Err(TooFine));
        check_cpu("m", Err(Malformed));
        check_cpu("250M", Err(Malformed));
        check_cpu("250mm", Err(Malformed));
        check_cpu("-250m", Err(Malformed));
    }

    #[test]
    fn cpu_in_cores() {
        check_cpu("1", Ok(1000));
        check_cpu("2", Ok(2000));
        check_cpu("0.5", Ok(500));
        check_cpu("1.5", Ok(1500));
        check_cpu(".5", Ok(500));
        check_cpu("2.", Ok(2000));
        check_cpu("0.001", Ok(1));
        check_cpu("0.125", Ok(125));
        check_cpu("0.5000", Ok(500));
        check_cpu("0.0001", Err(TooFine));
        check_cpu("1.0005", Err(TooFine));
        check_cpu("0", Err(Zero));
        check_cpu("0.000", Err(Zero));
        check_cpu("0.0000", Err(Zero));
        check_cpu("-1", Err(Malformed));
        check_cpu("+1", Err(Malformed));
        check_cpu("", Err(Malformed));
        check_cpu(".", Err(Malformed));
        check_cpu("1.2.3", Err(Malformed));
        check_cpu("1e3", Err(Malformed));
        check_cpu("lots", Err(Malformed));
        check_cpu(" 1", Err(Malformed));
        check_cpu("1 ", Err(Malformed));
        check_cpu("½", Err(Malformed));
    }

    #[test]
    fn cpu_bounds() {
        check_cpu("1000000", Ok(1_000_000_000));
        check_cpu("1000000000m", Ok(1_000_000_000));
        check_cpu("1000000.001", Err(TooLarge));
        check_cpu("1000001", Err(TooLarge));
        check_cpu("99999999999999999999999", Err(TooLarge));
        check_cpu("99999999999999999999999m", Err(TooLarge));
        check_cpu("00000000000000000000000001", Ok(1000));
    }

    #[test]
    fn memory_with_binary_units() {
        check_memory("1Ki", Ok(1024));
        check_memory("256Mi", Ok(268_435_456));
        check_memory("1Gi", Ok(1 << 30));
        check_memory("4Gi", Ok(4 << 30));
        check_memory("2Ti", Ok(2 << 40));
        check_memory("0Mi", Err(Zero));
        check_memory("Mi", Err(Malformed));
        check_memory("1.5Gi", Err(Malformed));
        check_memory("1GiB", Err(Malformed));
        check_memory("1gi", Err(Malformed));
        check_memory("1Pi", Err(Malformed));
    }

    #[test]
    fn memory_with_decimal_units() {
        check_memory("1k", Ok(1_000));
        check_memory("500M", Ok(500_000_000));
        check_memory("1G", Ok(1_000_000_000));
        check_memory("3T", Ok(3_000_000_000_000));
        check_memory("1K", Err(Malformed));
        check_memory("128m", Err(Malformed));
        check_memory("1MB", Err(Malformed));
    }

    #[test]
    fn memory_in_bytes() {
        check_memory("1", Ok(1));
        check_memory("1048576", Ok(1_048_576));
        check_memory("0", Err(Zero));
        check_memory("", Err(Malformed));
        check_memory("-1", Err(Malformed));
        check_memory("1.0", Err(Malformed));
        check_memory("1 Gi", Err(Malformed));
        check_memory("lots", Err(Malformed));
    }

    #[test]
    fn memory_overflow() {
        check_memory("18446744073709551615", Ok(u64::MAX));
        check_memory("18446744073709551616", Err(TooLarge));
        check_memory("16777215Ti", Ok(16_777_215 << 40));
        check_memory("16777216Ti", Err(TooLarge));
        check_memory("99999999T", Err(TooLarge));
    }
}
