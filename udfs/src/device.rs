//! Choosing the compute device.
//!
//! CUDA support is the `cuda` cargo feature, off by default. Asking for a GPU in a build without
//! it is a typed [`Error::DeviceUnavailable`], never a panic; `auto` picks the first GPU when the
//! build has CUDA and one is present, and the CPU otherwise.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// Where models run, as the user asks for it (`--device auto|cpu|cuda:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The first CUDA device when built with CUDA and one exists, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device number N.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| Error::DeviceUnavailable {
                    requested: other.to_string(),
                    reason: "expected `auto`, `cpu` or `cuda:N`".to_string(),
                }),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this build can run models on CUDA devices.
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

impl DeviceSpec {
    /// The candle device this spec selects.
    pub fn try_device(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(cuda_device(0).unwrap_or(Device::Cpu)),
            Self::Cuda(n) => cuda_device(n),
        }
    }
}

/// The device `spec` selects, created once per process: a CUDA context is expensive, and every
/// scoring call of every session on the device must share one.
pub fn shared_device(spec: DeviceSpec) -> Result<Device> {
    static DEVICES: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<DeviceSpec, Device>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut devices = DEVICES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(device) = devices.get(&spec) {
        return Ok(device.clone());
    }
    let device = spec.try_device()?;
    devices.insert(spec, device.clone());
    Ok(device)
}

/// Every device this build and machine can run models on: the CPU, then each CUDA device found.
/// Numerical tests run once per entry.
pub fn available() -> Vec<DeviceSpec> {
    let mut devices = vec![DeviceSpec::Cpu];
    devices.extend(
        (0..16)
            .map(DeviceSpec::Cuda)
            .take_while(|d| d.try_device().is_ok()),
    );
    devices
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::DeviceUnavailable {
        requested: format!("cuda:{ordinal}"),
        reason: e.to_string(),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Err(Error::DeviceUnavailable {
        requested: format!("cuda:{ordinal}"),
        reason: "this scorch was built without CUDA; rebuild with `--features cuda`".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in ["auto", "cpu", "cuda:1"] {
            assert_eq!(s.parse::<DeviceSpec>().expect("valid").to_string(), s);
        }
        assert_eq!(
            "cuda".parse::<DeviceSpec>().expect("valid"),
            DeviceSpec::Cuda(0)
        );
        assert!("gpu".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn auto_picks_a_gpu_exactly_when_one_is_usable() {
        assert!(DeviceSpec::Cpu.try_device().expect("cpu").is_cpu());
        let auto = DeviceSpec::Auto.try_device().expect("auto never fails");
        let gpus = available().len() - 1;
        assert_eq!(
            auto.is_cpu(),
            gpus == 0,
            "auto chose {:?} with {gpus} usable GPUs (cuda compiled: {})",
            auto.location(),
            cuda_compiled()
        );
    }

    #[test]
    fn devices_are_shared() {
        let a = shared_device(DeviceSpec::Cpu).expect("cpu");
        let b = shared_device(DeviceSpec::Cpu).expect("cpu");
        assert!(a.same_device(&b));
        assert!(shared_device(DeviceSpec::Cuda(99)).is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_typed_error() {
        let err = DeviceSpec::Cuda(0).try_device().unwrap_err();
        assert!(matches!(err, Error::DeviceUnavailable { .. }));
        assert!(err.to_string().contains("--features cuda"));
    }
}
