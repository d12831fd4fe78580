"""The users domain: forum users, who can prove a phone number or email through verify."""
