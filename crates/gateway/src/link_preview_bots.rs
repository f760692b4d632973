//! Link-preview bots: chat apps and search engines that fetch a URL when someone pastes or publishes it. A link to a
//! preview posted in a pull request or a channel must not wake the preview, nor count as someone using it.

use hyper::header::HeaderValue;

/// What their `User-Agent`s contain, compared without case.
const BOTS: [&str; 13] = [
    "Slackbot",
    "Twitterbot",
    "facebookexternalhit",
    "Discordbot",
    "LinkedInBot",
    "WhatsApp",
    "TelegramBot",
    "Googlebot",
    "bingbot",
    "Applebot",
    "redditbot",
    "Embedly",
    "SkypeUriPreview",
];

/// Whether a request with this `User-Agent` (or none) comes from a known link-preview bot.
pub(crate) fn is_link_preview_bot(agent: Option<&HeaderValue>) -> bool {
    agent.is_some_and(|agent| names_a_bot(agent.as_bytes()))
}

fn names_a_bot(agent: &[u8]) -> bool {
    BOTS.iter().any(|bot| {
        agent
            .windows(bot.len())
            .any(|window| window.eq_ignore_ascii_case(bot.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(agent: &str, bot: bool) {
        assert_eq!(names_a_bot(agent.as_bytes()), bot, "{agent}");
        let header = HeaderValue::from_str(agent).expect("a header value");
        assert_eq!(is_link_preview_bot(Some(&header)), bot, "{agent}");
    }

    #[test]
    fn link_preview_bots_are_known_by_their_user_agent() {
        for agent in [
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Slackbot 1.0 (+https://api.slack.com/robots)",
            "Twitterbot/1.0",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "WhatsApp/2.23.20.0 A",
            "TelegramBot (like TwitterBot)",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1)",
            "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
            "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
            "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
            "SLACKBOT",
            "twitterBOT",
        ] {
            check(agent, true);
        }
    }

    #[test]
    fn browsers_and_tools_are_people() {
        for agent in [
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.31",
            "Slack",
            "",
        ] {
            check(agent, false);
        }
        assert!(!is_link_preview_bot(None), "no User-Agent");
    }
}
