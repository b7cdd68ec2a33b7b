// Package irc is the IRC client side of the gateway: connections to IRC servers that register,
// negotiate IRCv3 capabilities and SASL, keep alive, pace their output, reconnect and rejoin, plus
// the line, casemapping, ISUPPORT, nick and message-splitting rules those connections follow.
package irc
