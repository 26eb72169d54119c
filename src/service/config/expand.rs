//! `$VAR`, `${VAR}` and `$$` in a config's strings, and which of them a
//! command may leave unset.

/// What a command needs of the config: everything (`run`, `serve`,
/// `config check`), or only what `status` reads (the state, the jobs,
/// their databases and schedules). A variable a command does not need may
/// be unset: `status` leaves the `[api]` table out, and in a repository's
/// location, password and options, and a job's heartbeat, healthchecks
/// and webhook URLs, an unset variable stands for its own name, a value
/// `status` does not use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Every value.
    All,
    /// What `status` reads.
    Status,
}

impl Needs {
    /// Whether an unset variable in the value at dotted `key` is no error.
    fn tolerates(self, key: &str) -> bool {
        match self {
            Needs::All => false,
            Needs::Status => {
                key.starts_with("repositories.")
                    || (key.starts_with("jobs.")
                        && (key.ends_with("_url") || key.contains(".webhook_on")))
            }
        }
    }
}

/// `$VAR`, `${VAR}` and `$$` in `s` (the key named in errors); with
/// `tolerant`, an unset variable stands for its name.
fn expand_with(s: &str, key: &str, tolerant: bool) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("{key}: unclosed ${{ in {s:?}: write ${{NAME}}"))?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "{key}: a $ not followed by a variable name: write $NAME, ${{NAME}}, or $$ for a $"
            ));
        }
        let value = match std::env::var(name) {
            Ok(v) => v,
            Err(_) if tolerant => name.to_string(),
            Err(_) => {
                return Err(format!(
                "{key}: environment variable {name} is not set: set it, or write $$ for a literal $"
            ))
            }
        };
        out.push_str(&value);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands every string in `v`, naming keys by their dotted path; an
/// unset variable is an error where the command `needs` the value.
pub(super) fn expand_value(
    v: &mut toml::Value,
    key: &str,
    needs: Needs,
) -> std::result::Result<(), String> {
    match v {
        toml::Value::String(s) => *s = expand_with(s, key, needs.tolerates(key))?,
        toml::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                expand_value(x, &format!("{key}[{i}]"), needs)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, x) in t.iter_mut() {
                let key = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                expand_value(x, &key, needs)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_of_variables() {
        std::env::set_var("LV_TEST_X", "secret");
        assert_eq!(
            expand_with("a$LV_TEST_X-b", "k", false).unwrap(),
            "asecret-b"
        );
        assert_eq!(expand_with("${LV_TEST_X}y", "k", false).unwrap(), "secrety");
        assert_eq!(expand_with("cost $$5", "k", false).unwrap(), "cost $5");
        let e = expand_with("$LV_TEST_UNSET_VAR", "repositories.a.location", false).unwrap_err();
        assert!(
            e.contains("LV_TEST_UNSET_VAR") && e.contains("repositories.a.location"),
            "{e}"
        );
        assert!(expand_with("${open", "k", false)
            .unwrap_err()
            .contains("unclosed"));
        assert!(expand_with("5$", "k", false)
            .unwrap_err()
            .contains("variable name"));
        // What a command does not need may be unset: it stands for its name.
        assert_eq!(
            expand_with("s3:http://$LV_TEST_UNSET_VAR/b", "k", true).unwrap(),
            "s3:http://LV_TEST_UNSET_VAR/b"
        );
        assert!(Needs::Status.tolerates("repositories.a.password.env"));
        assert!(Needs::Status.tolerates("jobs.j.heartbeat_url"));
        assert!(!Needs::Status.tolerates("state"));
        assert!(!Needs::Status.tolerates("databases.a.path"));
        assert!(!Needs::Status.tolerates("jobs.j.schedule"));
        assert!(!Needs::All.tolerates("api.tokens[0]"));
    }
}
