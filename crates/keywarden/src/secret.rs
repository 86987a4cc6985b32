//! Reading credentials (PINs, badge codes) for `user pin` and `user badge`: never from argv (other
//! users can read it in `/proc`), never echoed. On a terminal they are typed twice without echo;
//! otherwise one line is read from standard input (a pipe or a file), so scripts can provision.
//! The text is zeroed when dropped.

use std::io::{BufRead, IsTerminal};

use zeroize::Zeroizing;

use crate::error::{io, Error};

/// Read a secret named `what` ("PIN", "badge code") for the command `command`.
pub fn read(command: &str, what: &str) -> Result<Zeroizing<String>, Error> {
    let invalid = |message: String| Error::Invalid {
        what: command.to_owned(),
        message,
    };
    let secret = if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password(format!("{what}: "))
                .map_err(io(format!("{command}: read the {what}")))?,
        );
        let second = Zeroizing::new(
            rpassword::prompt_password(format!("{what} again: "))
                .map_err(io(format!("{command}: read the {what}")))?,
        );
        if *first != *second {
            return Err(invalid(format!(
                "the two {what}s differ; nothing was changed"
            )));
        }
        first
    } else {
        read_line(&mut std::io::stdin().lock())
            .map_err(io(format!(
                "{command}: read the {what} from standard input"
            )))?
            .ok_or_else(|| invalid(format!("no {what} on standard input")))?
    };
    if secret.is_empty() {
        return Err(invalid(format!("the {what} is empty")));
    }
    Ok(secret)
}

/// One line from `input` without its line ending; `None` at end of input.
pub fn read_line(input: &mut impl BufRead) -> std::io::Result<Option<Zeroizing<String>>> {
    // Room for any PIN or badge code up front, so the buffer is not reallocated (which would leave
    // an unzeroed copy behind).
    let mut line = Zeroizing::new(String::with_capacity(256));
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let len = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(len);
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_without_its_ending() {
        let mut input: &[u8] = b"1234\r\nsecond\n";
        assert_eq!(
            read_line(&mut input)
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some("1234")
        );
        assert_eq!(
            read_line(&mut input)
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some("second")
        );
        assert_eq!(read_line(&mut input).unwrap(), None);
    }

    #[test]
    fn a_last_line_without_newline_counts() {
        let mut input: &[u8] = b"0815";
        assert_eq!(
            read_line(&mut input)
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some("0815")
        );
    }

    #[test]
    fn inner_spaces_are_kept() {
        let mut input: &[u8] = b" AB 12 \n";
        assert_eq!(
            read_line(&mut input)
                .unwrap()
                .as_deref()
                .map(String::as_str),
            Some(" AB 12 ")
        );
    }
}
