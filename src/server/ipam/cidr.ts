// The IPv4/CIDR helpers live in the shared model (the agents use them too); re-exported for the IPAM code.
export { inRange, intToIp, ipToInt, isIpv4, parseSubnet, type Subnet } from '../../model/cidr.js';
