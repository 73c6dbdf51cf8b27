//! Domain enums (pack fit, crop border, detector family, upscale method, optimiser, stage, ...) are closed sets
//! of named values. Each implements [`Named`] once; `FromStr`, `Display` and the command line's choices all come
//! from it, so pipeline.yaml, flags and manifests spell them the same way and the enums stay free of clap.
pub trait Named: Sized + Copy + PartialEq + 'static {
    /// Every value, in the order help texts list them.
    const ALL: &'static [Self];
    /// What a value is, for error messages ("pack.fit", "stage").
    const WHAT: &'static str;
    /// The value's name in pipeline.yaml, on the command line and in manifests.
    fn name(self) -> &'static str;
    /// One line on what the value does, for `--help` (empty when the name says it all).
    fn help(self) -> &'static str {
        ""
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.name()).collect()
    }

    /// The value called `s`, or an error listing the names.
    fn parse_name(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("{} {s:?}: expected one of {}", Self::WHAT, Self::names().join(", ")))
    }
}

/// Implements `FromStr` and `Display` for a [`Named`] enum.
#[macro_export]
macro_rules! impl_named_str {
    ($t:ty) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t as $crate::named::Named>::parse_name(s)
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::named::Named::name(*self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Colour {
        Red,
        Blue,
    }
    impl Named for Colour {
        const ALL: &'static [Self] = &[Colour::Red, Colour::Blue];
        const WHAT: &'static str = "colour";
        fn name(self) -> &'static str {
            match self {
                Colour::Red => "red",
                Colour::Blue => "blue",
            }
        }
    }
    impl_named_str!(Colour);

    #[test]
    fn names_round_trip_and_errors_list_the_choices() {
        for c in Colour::ALL {
            assert_eq!(c.to_string().parse::<Colour>().unwrap(), *c);
        }
        assert_eq!("green".parse::<Colour>().unwrap_err(), "colour \"green\": expected one of red, blue");
    }
}
