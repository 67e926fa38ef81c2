//! Form bodies as the browser sends them (`application/x-www-form-urlencoded`,
//! repeated names for checkboxes).

pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    /// An unparseable body reads as an empty form: every required field is
    /// then missing, which the page reports.
    pub fn parse(body: &[u8]) -> Self {
        FormFields(serde_urlencoded::from_bytes(body).unwrap_or_default())
    }

    /// The first value named `name`, trimmed; empty counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// Every value named `name` (checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_and_blank_values() {
        let form = FormFields::parse(b"scope=reports%3Aread&scope=keys%3Amanage&name=+ERP+&empty=");
        assert_eq!(form.all("scope"), vec!["reports:read", "keys:manage"]);
        assert_eq!(form.get("name"), Some("ERP"));
        assert_eq!(form.get("empty"), None);
        assert_eq!(form.get("missing"), None);
        assert!(FormFields::parse(b"%%%").get("x").is_none());
    }
}
