//! [`Assignment`]: which input partitions a consumer owns, parsed once from its setting.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// Which input partitions a consumer owns: `group` (consumer-group rebalancing), `all` (every
/// partition of the topic) or a list of distinct partition numbers such as `0,2`.
///
/// This is the only parser of the setting: the Kafka adapter takes the parsed value, so what
/// the settings accept is exactly what the consumer is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Assignment {
    /// Consumer-group rebalancing.
    Group,
    /// Every partition of the topic (from its metadata).
    All,
    /// Exactly these partitions (distinct, non-negative, in the order written).
    Partitions(Vec<i32>),
}

impl FromStr for Assignment {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "group" => return Ok(Assignment::Group),
            "all" => return Ok(Assignment::All),
            _ => {}
        }
        let mut partitions = Vec::new();
        for entry in text.split(',') {
            let partition = entry
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    format!("`{text}` must be `group`, `all` or a list of partitions like `0,2` (`{entry}` is not a partition number)")
                })?;
            if partitions.contains(&partition) {
                return Err(format!("`{text}` names partition {partition} twice"));
            }
            partitions.push(partition);
        }
        Ok(Assignment::Partitions(partitions))
    }
}

impl TryFrom<String> for Assignment {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assignment::Group => f.write_str("group"),
            Assignment::All => f.write_str("all"),
            Assignment::Partitions(list) => {
                for (i, p) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_written_is_a_partition_assigned() {
        assert_eq!("group".parse(), Ok(Assignment::Group));
        assert_eq!("all".parse(), Ok(Assignment::All));
        assert_eq!("0, 2".parse(), Ok(Assignment::Partitions(vec![0, 2])));
        assert_eq!("3".parse(), Ok(Assignment::Partitions(vec![3])));
        for text in ["0,2,", "0,,2", "-1", "a", " all", "ALL", "", "0,x"] {
            assert!(text.parse::<Assignment>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_partition_named_twice_is_refused() {
        assert!("0,0".parse::<Assignment>().unwrap_err().contains("twice"));
        assert!("1, 2 ,1".parse::<Assignment>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in ["group", "all", "0,2", "5"] {
            assert_eq!(text.parse::<Assignment>().unwrap().to_string(), text);
        }
    }
}
